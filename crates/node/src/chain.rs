//! The tree of imported blocks, each with its post-state, and the canonical head that
//! forkchoice updates move, reported as kiln's chain [`Notification`]s.

use crate::state::{Codes, StateSnapshot};
use alloy_consensus::Header;
use alloy_primitives::{map::HashMap, B256};
use kiln_exex::{BlockRecord, Chain, Notification};
use std::sync::Arc;

/// How many ancestors BLOCKHASH can see.
pub const BLOCKHASH_WINDOW: u64 = 256;

/// One imported (valid) block.
#[derive(Clone, Debug)]
pub struct ImportedBlock {
    /// Its header.
    pub header: Header,
    /// Its hash.
    pub hash: B256,
    /// The state after it.
    pub state: Arc<StateSnapshot>,
    /// What the hot-code service is told about it.
    pub record: BlockRecord,
}

/// A forkchoice update named a block the node does not have.
#[derive(Debug, thiserror::Error)]
#[error("forkchoice to unknown block {0}")]
pub struct UnknownBlock(pub B256);

/// Every imported block by hash, from genesis, and the canonical head.
#[derive(Debug)]
pub struct BlockTree {
    blocks: HashMap<B256, ImportedBlock>,
    head: B256,
    /// Code of every block's state, by hash.
    pub codes: Codes,
}

impl BlockTree {
    /// A tree holding only `genesis`, which is the head.
    pub fn new(genesis: ImportedBlock, codes: Codes) -> Self {
        let head = genesis.hash;
        let mut blocks = HashMap::default();
        blocks.insert(head, genesis);
        Self {
            blocks,
            head,
            codes,
        }
    }

    /// The block with this hash, if imported.
    pub fn get(&self, hash: &B256) -> Option<&ImportedBlock> {
        self.blocks.get(hash)
    }

    /// The canonical head.
    pub fn head(&self) -> &ImportedBlock {
        &self.blocks[&self.head]
    }

    /// Adds a block whose parent is in the tree (the head does not move).
    pub fn insert(&mut self, block: ImportedBlock) {
        debug_assert!(self.blocks.contains_key(&block.header.parent_hash));
        self.blocks.insert(block.hash, block);
    }

    /// Number -> hash of `hash` and its ancestors within the BLOCKHASH window of its child.
    pub fn ancestor_hashes(&self, hash: B256) -> HashMap<u64, B256> {
        let mut hashes = HashMap::default();
        let mut cursor = self.blocks.get(&hash);
        while let Some(block) = cursor {
            hashes.insert(block.header.number, block.hash);
            if hashes.len() as u64 >= BLOCKHASH_WINDOW || block.header.number == 0 {
                break;
            }
            cursor = self.blocks.get(&block.header.parent_hash);
        }
        hashes
    }

    /// Makes `hash` the head; returns how the canonical chain changed (nothing if it is
    /// already the head): blocks appended, or the blocks that left and those that joined.
    pub fn forkchoice(&mut self, hash: B256) -> Result<Option<Notification>, UnknownBlock> {
        if !self.blocks.contains_key(&hash) {
            return Err(UnknownBlock(hash));
        }
        let (mut old, mut new) = (self.head, hash);
        let (mut left, mut joined) = (Vec::new(), Vec::new());
        let number = |h: &B256| self.blocks[h].header.number;
        let parent = |h: &B256| self.blocks[h].header.parent_hash;
        while number(&old) > number(&new) {
            left.push(old);
            old = parent(&old);
        }
        while number(&new) > number(&old) {
            joined.push(new);
            new = parent(&new);
        }
        while old != new {
            left.push(old);
            joined.push(new);
            old = parent(&old);
            new = parent(&new);
        }
        self.head = hash;
        let chain = |hashes: Vec<B256>| {
            Arc::new(Chain::new(
                hashes
                    .iter()
                    .rev()
                    .map(|h| self.blocks[h].record.clone())
                    .collect(),
            ))
        };
        Ok(match (left.is_empty(), joined.is_empty()) {
            (true, true) => None,
            (true, false) => Some(Notification::Committed { new: chain(joined) }),
            (false, true) => Some(Notification::Reverted { old: chain(left) }),
            (false, false) => Some(Notification::Reorged {
                old: chain(left),
                new: chain(joined),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_runtime::BlockId;
    use revm::primitives::hardfork::SpecId;

    fn block(number: u64, tag: u8, parent: B256) -> ImportedBlock {
        let hash = B256::with_last_byte(tag);
        ImportedBlock {
            header: Header {
                number,
                parent_hash: parent,
                ..Default::default()
            },
            hash,
            state: Arc::default(),
            record: BlockRecord {
                number,
                hash,
                parent_hash: parent,
                id: BlockId {
                    number,
                    timestamp: 0,
                    beneficiary: Default::default(),
                    prevrandao: None,
                    gas_limit: 0,
                    basefee: 0,
                },
                spec: SpecId::CANCUN,
                deployed: vec![],
                usage: None,
            },
        }
    }

    fn hashes(chain: &Chain) -> Vec<u8> {
        chain.blocks.iter().map(|b| b.hash[31]).collect()
    }

    #[test]
    fn extends_reorgs_and_reverts() {
        let genesis = block(0, 0xff, B256::ZERO);
        let g = genesis.hash;
        let mut tree = BlockTree::new(genesis, Codes::default());
        // g <- 1 <- 2, g <- 11 <- 12 <- 13
        tree.insert(block(1, 1, g));
        tree.insert(block(2, 2, B256::with_last_byte(1)));
        tree.insert(block(1, 11, g));
        tree.insert(block(2, 12, B256::with_last_byte(11)));
        tree.insert(block(3, 13, B256::with_last_byte(12)));

        match tree.forkchoice(B256::with_last_byte(1)).unwrap() {
            Some(Notification::Committed { new }) => assert_eq!(hashes(&new), [1]),
            other => panic!("{other:?}"),
        }
        match tree.forkchoice(B256::with_last_byte(2)).unwrap() {
            Some(Notification::Committed { new }) => assert_eq!(hashes(&new), [2]),
            other => panic!("{other:?}"),
        }
        assert!(tree.forkchoice(B256::with_last_byte(2)).unwrap().is_none());
        match tree.forkchoice(B256::with_last_byte(13)).unwrap() {
            Some(Notification::Reorged { old, new }) => {
                assert_eq!(hashes(&old), [1, 2]);
                assert_eq!(hashes(&new), [11, 12, 13]);
            }
            other => panic!("{other:?}"),
        }
        match tree.forkchoice(B256::with_last_byte(11)).unwrap() {
            Some(Notification::Reverted { old }) => assert_eq!(hashes(&old), [12, 13]),
            other => panic!("{other:?}"),
        }
        assert!(tree.forkchoice(B256::with_last_byte(99)).is_err());
        assert_eq!(tree.ancestor_hashes(B256::with_last_byte(13)).len(), 4);
    }
}
