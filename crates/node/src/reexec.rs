//! `kiln reexec`: a block range of an imported chain executed again in each mode, each block on
//! its parent's state and checked as an import checks it, with the EVM throughput per mode (the
//! work of tracers and indexers, which re-execute history).

use crate::{
    chain_import::ChainError,
    decode::decode_block,
    import::{ImportMode, ImportOptions, Importer},
    node::NodeError,
    source::ChainSource,
    BlockError,
};
use alloy_primitives::{map::HashMap, Bytes, B256};
use kiln_exex::ServiceConfig;
use std::{ops::ControlFlow, path::Path, time::Duration};

/// One mode's re-execution of the range.
#[derive(Clone, Debug)]
pub struct ModeRun {
    /// The mode.
    pub mode: ImportMode,
    /// Blocks executed.
    pub blocks: usize,
    /// Their gas.
    pub gas: u64,
    /// Time in the EVM (block executor), compilation on first sight included in `jit` mode.
    pub execution: Duration,
    /// Whole time (checks and roots included).
    pub total: Duration,
}

impl ModeRun {
    /// EVM throughput.
    pub fn mgas_per_sec(&self) -> f64 {
        self.gas as f64 / 1e6 / self.execution.as_secs_f64().max(1e-9)
    }
}

/// Why a re-execution failed.
#[derive(Debug, thiserror::Error)]
pub enum ReexecError {
    /// The chain could not be read or imported.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The chain's import stopped before the range's end.
    #[error("the chain's import stopped at block {number}: {error}")]
    Import {
        /// The last block imported.
        number: u64,
        /// Why.
        error: ChainError,
    },
    /// The range is empty or beyond the canonical head.
    #[error("blocks {from}..={to} are not on the canonical chain (head {head})")]
    Range {
        /// First block asked for.
        from: u64,
        /// Last block asked for.
        to: u64,
        /// The canonical head.
        head: u64,
    },
    /// A block disagreed with its header when executed again.
    #[error("{mode}: {error}")]
    Block {
        /// The mode.
        mode: ImportMode,
        /// The block and why.
        error: Box<BlockError>,
    },
}

/// Imports the chain folder `chain` (interpreter), then executes its canonical blocks
/// `from..=to` again in each of `modes`; `service` configures tiered mode.
pub fn run(
    chain: &Path,
    from: u64,
    to: u64,
    modes: &[ImportMode],
    service: &ServiceConfig,
) -> Result<Vec<ModeRun>, ReexecError> {
    let source = ChainSource::open(chain).map_err(NodeError::from)?;
    let mut importer = Importer::new(kiln_runtime::Runtime::interpreter(), None);
    let imported = importer
        .import_chain(&source, &mut |_| ControlFlow::Continue(()))
        .map_err(NodeError::from);
    importer.shutdown();
    let mut imported = imported?;
    let head = imported.tree.head().header.number;
    if let Some(error) = imported.error.take() {
        if head < to {
            return Err(ReexecError::Import {
                number: head,
                error,
            });
        }
    }
    if from == 0 || from > to || to > head {
        return Err(ReexecError::Range { from, to, head });
    }
    // The canonical blocks of the range, oldest first, as their RLP.
    let by_hash: HashMap<B256, &Bytes> = source
        .blocks
        .iter()
        .filter_map(|rlp| Some((decode_block(rlp).ok()?.header.hash_slow(), rlp)))
        .collect();
    let mut range = Vec::new();
    let mut cursor = imported.tree.head().hash;
    while let Some(block) = imported.tree.get(&cursor) {
        if block.header.number < from {
            break;
        }
        if block.header.number <= to {
            range.push(by_hash[&block.hash].clone());
        }
        cursor = block.header.parent_hash;
    }
    range.reverse();
    let mut runs = Vec::new();
    for &mode in modes {
        let mut importer = Importer::for_options(&ImportOptions {
            mode,
            service: service.clone(),
            ..ImportOptions::default()
        })
        .map_err(NodeError::from)?;
        if let Ok(spec) = crate::CancunSpec::from_genesis(&source.genesis.config) {
            importer.use_spec(spec);
        }
        let start = std::time::Instant::now();
        let times = importer.reexecute(&mut imported.tree, &range);
        let total = start.elapsed();
        let (timings, _) = importer.shutdown();
        let times = times.map_err(|error| ReexecError::Block { mode, error })?;
        runs.push(ModeRun {
            mode,
            blocks: times.len(),
            gas: timings.gas,
            execution: timings.execution,
            total,
        });
    }
    Ok(runs)
}
