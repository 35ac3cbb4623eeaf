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
    /// Time in the EVM (block executor) in the last pass.
    pub execution: Duration,
    /// Time in the EVM in the first pass: in `jit` mode it includes compiling every code on
    /// first sight; in `tiered` mode the service has only begun to compile.
    pub first_pass: Duration,
    /// Whole time of the last pass (checks and roots included).
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
/// `from..=to` again in each of `modes`, `passes` times each (the last pass is the one timed;
/// between passes the hot-code service may finish its jobs); `service` configures tiered mode.
pub fn run(
    chain: &Path,
    from: u64,
    to: u64,
    modes: &[ImportMode],
    passes: usize,
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
        let mut passes_done: Vec<(Duration, Duration, u64, usize)> = Vec::new();
        let mut failed = None;
        for _ in 0..passes.max(1) {
            let (before, gas_before) = (importer.timings.execution, importer.timings.gas);
            let start = std::time::Instant::now();
            match importer.reexecute(&mut imported.tree, &range) {
                Ok(times) => passes_done.push((
                    importer.timings.execution - before,
                    start.elapsed(),
                    importer.timings.gas - gas_before,
                    times.len(),
                )),
                Err(error) => {
                    failed = Some(error);
                    break;
                }
            }
            if let Some(service) = importer.service_mut() {
                service.wait_idle(Duration::from_secs(120));
            }
        }
        importer.shutdown();
        if let Some(error) = failed {
            return Err(ReexecError::Block { mode, error });
        }
        let (Some(first), Some(last)) = (passes_done.first(), passes_done.last()) else {
            continue;
        };
        runs.push(ModeRun {
            mode,
            blocks: last.3,
            gas: last.2,
            execution: last.0,
            first_pass: first.0,
            total: last.1,
        });
    }
    Ok(runs)
}
