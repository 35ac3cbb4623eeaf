//! Importing a [`ChainSource`] (genesis file, RLP blocks, forkchoice updates) as a node does:
//! each block sent as a new payload, the head moved by forkchoice updates, every canonical
//! change told to the hot-code service. The first block the node cannot accept ends the import;
//! everything before it stays imported.

use crate::{
    chain::BlockTree,
    decode::decode_all_rlp,
    error::{BlockError, GenesisError},
    execute::executor_factory_for,
    genesis::geth_genesis_tree,
    import::{Importer, TARGET},
    source::ChainSource,
    spec::CancunSpec,
};
use alloy_primitives::B256;
use kiln_evm::KilnEvmFactory;
use std::{
    ops::ControlFlow,
    time::{Duration, Instant},
};

/// Why a chain import stopped before the end of its source.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The genesis file cannot start a chain.
    #[error("genesis: {0}")]
    Genesis(#[from] GenesisError),
    /// A block was rejected.
    #[error(transparent)]
    Block(#[from] Box<BlockError>),
    /// The blocks file is not a sequence of RLP blocks from this point.
    #[error("block {index}: the blocks file is malformed at byte {offset}: {why}")]
    Malformed {
        /// The position the next block would have had.
        index: usize,
        /// Byte offset in the file.
        offset: usize,
        /// What is wrong.
        why: String,
    },
    /// A forkchoice update names a block the node does not have.
    #[error("forkchoice update after block {after}: unknown head {head}")]
    UnknownHead {
        /// Blocks sent before it.
        after: usize,
        /// The head it names.
        head: B256,
    },
    /// The caller asked the import to stop.
    #[error("interrupted after {0} blocks")]
    Interrupted(usize),
}

/// One block of a chain import, as it was accepted.
#[derive(Clone, Copy, Debug)]
pub struct BlockImported {
    /// Position in the source.
    pub index: usize,
    /// Block number.
    pub number: u64,
    /// Block hash.
    pub hash: B256,
    /// Gas the block used.
    pub gas_used: u64,
    /// Its transactions.
    pub transactions: usize,
    /// Time in the EVM (block executor).
    pub execution: Duration,
    /// Time for the whole new payload (checks, execution, roots).
    pub total: Duration,
}

/// What a chain import did.
#[derive(Debug)]
pub struct ChainImport {
    /// Every block accepted, with its state; the head is the last forkchoice's.
    pub tree: BlockTree,
    /// Blocks accepted.
    pub imported: usize,
    /// Why it stopped early, if it did.
    pub error: Option<ChainError>,
}

impl ChainImport {
    /// The canonical head's number, hash and state root.
    pub fn head(&self) -> (u64, B256, B256) {
        let head = self.tree.head();
        (head.header.number, head.hash, head.header.state_root)
    }
}

impl Importer {
    /// Imports `source`, calling `on_block` after each block it accepts (which may stop the
    /// import by returning `Break`).
    pub fn import_chain(
        &mut self,
        source: &ChainSource,
        on_block: &mut dyn FnMut(&BlockImported) -> ControlFlow<()>,
    ) -> Result<ChainImport, ChainError> {
        let start = Instant::now();
        let spec = CancunSpec::from_genesis(&source.genesis.config).map_err(GenesisError::from)?;
        self.use_spec(spec);
        let mut tree = geth_genesis_tree(&self.factory, &source.genesis)?;
        if let Some(store) = &self.code_store {
            store.extend(&tree.codes);
        }
        self.timings.other += start.elapsed();

        let start = Instant::now();
        let decoded = decode_all_rlp(&source.blocks);
        self.timings.decode += start.elapsed();

        let mut updates = source.forkchoice.as_deref().unwrap_or_default().iter();
        let mut next_update = updates.next();
        let mut imported = 0;
        let mut error = None;
        for (index, decoded) in decoded.into_iter().enumerate() {
            let txs = decoded
                .as_ref()
                .map_or(0, |d| d.block.body.transactions.len());
            let (before, started) = (self.timings.execution, Instant::now());
            let record = match self.import_block(&mut tree, index, decoded) {
                Ok(record) => record,
                Err(e) => {
                    tracing::error!(target: TARGET, error = %e, "block rejected; the import stops at the last valid block");
                    error = Some(ChainError::Block(e));
                    break;
                }
            };
            imported += 1;
            let event = BlockImported {
                index,
                number: record.number,
                hash: record.hash,
                gas_used: tree.get(&record.hash).map_or(0, |b| b.header.gas_used),
                transactions: txs,
                execution: self.timings.execution - before,
                total: started.elapsed(),
            };
            let forkchoice_start = Instant::now();
            if source.forkchoice.is_none() {
                self.forkchoice(&mut tree, record.hash);
            }
            while let Some(update) = next_update.filter(|u| u.after <= index + 1) {
                match tree.forkchoice(update.head) {
                    Ok(Some(notification)) => self.notify(&notification),
                    Ok(None) => {}
                    Err(_) => {
                        error = Some(ChainError::UnknownHead {
                            after: update.after,
                            head: update.head,
                        });
                        break;
                    }
                }
                next_update = updates.next();
            }
            self.timings.other += forkchoice_start.elapsed();
            if error.is_some() {
                break;
            }
            if on_block(&event).is_break() {
                error = Some(ChainError::Interrupted(imported));
                break;
            }
        }
        if error.is_none() {
            if let Some((offset, why)) = &source.malformed {
                error = Some(ChainError::Malformed {
                    index: source.blocks.len(),
                    offset: *offset,
                    why: why.clone(),
                });
            } else if let Some(update) = next_update {
                // Updates past the last block: the blocks they name must be known already.
                let mut pending = Some(update);
                while let Some(update) = pending {
                    match tree.forkchoice(update.head) {
                        Ok(Some(notification)) => self.notify(&notification),
                        Ok(None) => {}
                        Err(_) => {
                            error = Some(ChainError::UnknownHead {
                                after: update.after,
                                head: update.head,
                            });
                            break;
                        }
                    }
                    pending = updates.next();
                }
            }
        }
        Ok(ChainImport {
            tree,
            imported,
            error,
        })
    }

    /// Executes blocks of the chain `spec` describes from now on.
    pub fn use_spec(&mut self, spec: CancunSpec) {
        self.factory = executor_factory_for(spec, KilnEvmFactory::new(self.runtime.clone()));
    }

    /// Executes again, each on its parent's state in `tree`, the blocks `rlps` encode (blocks
    /// the tree holds), checking each as an import does; returns the time in the EVM per block.
    pub fn reexecute(
        &mut self,
        tree: &mut BlockTree,
        rlps: &[alloy_primitives::Bytes],
    ) -> Result<Vec<Duration>, Box<BlockError>> {
        // The service finds the code of contracts deployed before the range here.
        if let Some(store) = &self.code_store {
            store.extend(&tree.codes);
        }
        let mut times = Vec::with_capacity(rlps.len());
        for (index, decoded) in decode_all_rlp(rlps).into_iter().enumerate() {
            let decoded = decoded.map_err(|reason| {
                Box::new(BlockError {
                    index,
                    number: None,
                    hash: None,
                    reason,
                })
            })?;
            let before = self.timings.execution;
            let block = self.process_block(tree, index, decoded)?;
            times.push(self.timings.execution - before);
            // The service learns heat from the blocks as a node's would.
            if self.service.is_some() {
                let chain = kiln_exex::Chain::new(vec![block.record]);
                self.notify(&kiln_exex::Notification::Committed {
                    new: std::sync::Arc::new(chain),
                });
            }
        }
        Ok(times)
    }
}
