//! `kiln demo`: the demo chain built from the transaction mix (with side blocks and reorgs), then
//! imported twice, with the interpreter only and with kiln's hot-code service, and compared.

use crate::{mix::DemoChain, plot};
use alloy_eips::eip1559::BaseFeeParams;
use alloy_primitives::{map::HashMap, Address, Bytes, B256};
use kiln_evm::KilnEvmFactory;
use kiln_exex::{CompileEvent, ServiceConfig, ServiceStats};
use kiln_node::{
    chain::BlockTree,
    execute::{executor_factory_for, KilnBlockExecutorFactory},
    genesis::geth_genesis_tree,
    BlockImported, CancunSpec, ChainSource, ForkchoiceUpdate, ImportMode, ImportOptions, Importer,
    Payload, Timings,
};
use kiln_runtime::{Runtime, Tier};
use std::{
    ops::ControlFlow,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

/// What the demo builds and how it imports it.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Seed of every account and choice.
    pub seed: u64,
    /// Funded accounts.
    pub accounts: usize,
    /// Blocks after the setup.
    pub blocks: usize,
    /// Transactions per block.
    pub txs_per_block: usize,
    /// Every this many blocks a side block is executed and dropped, and every other time a
    /// short reorg replaces a canonical block with a two-block branch (0: none).
    pub fork_every: usize,
    /// Where the chain folder and the picture go.
    pub out: PathBuf,
    /// The service's settings for the second import.
    pub service: ServiceConfig,
    /// Let the service finish its compile jobs after each block (a node at the chain tip has
    /// twelve seconds per block for them); its waits are reported apart.
    pub settle: bool,
}

/// Why the demo failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A block of the generated chain could not be built.
    #[error("building block {number}: {reason}")]
    Build {
        /// Its number.
        number: u64,
        /// Why.
        reason: kiln_node::Reject,
    },
    /// The genesis is unusable.
    #[error(transparent)]
    Genesis(#[from] kiln_node::GenesisError),
    /// Writing the chain or the picture failed.
    #[error(transparent)]
    Source(#[from] kiln_node::SourceError),
    /// An import could not start.
    #[error(transparent)]
    Import(#[from] kiln_node::ImportError),
    /// An import stopped early.
    #[error("{mode} import: {error}")]
    Chain {
        /// The mode.
        mode: ImportMode,
        /// Why.
        error: kiln_node::ChainError,
    },
    /// The two imports ended on different state roots.
    #[error("state roots differ: interpreter {interpreter}, kiln {kiln}")]
    Roots {
        /// The interpreter's.
        interpreter: B256,
        /// kiln's.
        kiln: B256,
    },
    /// The picture could not be drawn.
    #[error("drawing {path}: {why}")]
    Plot {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
}

/// The generated chain, with what the report needs to name contracts.
#[derive(Debug)]
pub struct Generated {
    /// The chain.
    pub source: ChainSource,
    /// Transactions in all blocks sent (side blocks included).
    pub transactions: usize,
    /// Side blocks executed and never canonical.
    pub dropped: usize,
    /// Reorgs.
    pub reorgs: usize,
    /// Blocks of the setup phase.
    pub setup_blocks: usize,
    /// Contract names by address.
    pub names: Vec<(Address, &'static str)>,
}

/// Builds the demo chain.
pub fn generate(opts: &DemoOptions) -> Result<Generated, DemoError> {
    let mut chain = DemoChain::new(opts.seed, opts.accounts);
    let genesis = chain.genesis();
    let spec = CancunSpec::from_genesis(&genesis.config).map_err(kiln_node::GenesisError::from)?;
    let factory = executor_factory_for(spec, KilnEvmFactory::new(Runtime::interpreter()));
    let mut tree = geth_genesis_tree(&factory, &genesis)?;
    let mut builder = Builder {
        factory: &factory,
        tree: &mut tree,
        blocks: Vec::new(),
        forkchoice: Vec::new(),
        transactions: 0,
    };
    let mut head = builder.tree.head().hash;
    let setup = chain.setup_blocks();
    let setup_blocks = setup.len();
    for txs in setup {
        head = builder.build(head, txs, 0)?;
        builder.choose(head);
    }
    let (mut dropped, mut reorgs) = (0, 0);
    for i in 1..=opts.blocks {
        let fork = opts.fork_every > 0 && i % opts.fork_every == 0;
        if fork && (i / opts.fork_every) % 2 == 1 {
            // A payload built and dropped: executed, never canonical.
            let mut side = chain.clone();
            let txs = side.next_block(opts.txs_per_block, builder.base_fee(head));
            builder.build(head, txs, 1)?;
            dropped += 1;
        } else if fork {
            // A reorg: one block becomes canonical, then a two-block branch replaces it.
            let mut old = chain.clone();
            let txs = old.next_block(opts.txs_per_block, builder.base_fee(head));
            let replaced = builder.build(head, txs, 2)?;
            builder.choose(replaced);
            let txs = chain.next_block(opts.txs_per_block, builder.base_fee(head));
            let first = builder.build(head, txs, 3)?;
            let txs = chain.next_block(opts.txs_per_block, builder.base_fee(first));
            head = builder.build(first, txs, 3)?;
            builder.choose(head);
            reorgs += 1;
            continue;
        }
        let txs = chain.next_block(opts.txs_per_block, builder.base_fee(head));
        head = builder.build(head, txs, 0)?;
        builder.choose(head);
    }
    let transactions = builder.transactions;
    let source = ChainSource {
        genesis,
        blocks: builder.blocks,
        malformed: None,
        forkchoice: Some(builder.forkchoice),
    };
    Ok(Generated {
        source,
        transactions,
        dropped,
        reorgs,
        setup_blocks,
        names: chain.contract_names(),
    })
}

/// Blocks built on a tree, in the order sent, and the forkchoice updates between them.
struct Builder<'a> {
    factory: &'a KilnBlockExecutorFactory,
    tree: &'a mut BlockTree,
    blocks: Vec<Bytes>,
    forkchoice: Vec<ForkchoiceUpdate>,
    transactions: usize,
}

impl Builder<'_> {
    fn base_fee(&self, parent: B256) -> u64 {
        self.tree
            .get(&parent)
            .and_then(|b| b.header.next_block_base_fee(BaseFeeParams::ethereum()))
            .unwrap_or_default()
    }

    /// Builds a block on `parent`; `branch` tells siblings apart.
    fn build(
        &mut self,
        parent: B256,
        transactions: Vec<alloy_consensus::TxEnvelope>,
        branch: u8,
    ) -> Result<B256, DemoError> {
        let header = &self.tree.get(&parent).expect("parent built").header;
        let number = header.number + 1;
        self.transactions += transactions.len();
        let payload = Payload {
            parent,
            timestamp: header.timestamp + 12,
            beneficiary: Address::with_last_byte(0xc0 + branch),
            prevrandao: alloy_primitives::keccak256(
                [&number.to_be_bytes()[..], &[branch]].concat(),
            ),
            parent_beacon_block_root: alloy_primitives::keccak256(number.to_be_bytes()),
            extra_data: Bytes::from_static(b"kiln demo"),
            transactions,
        };
        let built = kiln_node::build_block(self.factory, self.tree, payload)
            .map_err(|reason| DemoError::Build { number, reason })?;
        self.blocks.push(built.rlp);
        Ok(built.hash)
    }

    /// Sends a forkchoice update to `head` after the blocks sent so far.
    fn choose(&mut self, head: B256) {
        self.forkchoice.push(ForkchoiceUpdate {
            after: self.blocks.len(),
            head,
        });
    }
}

/// One import of the demo chain.
#[derive(Debug)]
pub struct Run {
    /// The mode.
    pub mode: ImportMode,
    /// Wall time of the import, without the time spent waiting for the service.
    pub wall: Duration,
    /// Where the time went.
    pub timings: Timings,
    /// Each block as imported.
    pub blocks: Vec<BlockImported>,
    /// The head's state root.
    pub state_root: B256,
    /// The service's counters (kiln's run).
    pub service: Option<ServiceStats>,
    /// The compilations the service installed.
    pub compiles: Vec<CompileEvent>,
    /// The hottest code at the head (the service's heat ranking), if any.
    pub hottest: Option<B256>,
    /// Contract code hash by address, at the head.
    pub code_hashes: HashMap<Address, B256>,
}

impl Run {
    /// EVM throughput.
    pub fn mgas_per_sec(&self) -> f64 {
        self.timings.mgas_per_sec()
    }
}

/// Imports `source` in `mode`.
pub fn import(
    source: &ChainSource,
    mode: ImportMode,
    service: &ServiceConfig,
    settle: bool,
) -> Result<Run, DemoError> {
    let mut importer = Importer::for_options(&ImportOptions {
        mode,
        service: service.clone(),
        settle,
        ..ImportOptions::default()
    })?;
    let start = Instant::now();
    let mut blocks = Vec::new();
    let done = importer.import_chain(source, &mut |b| {
        blocks.push(*b);
        ControlFlow::Continue(())
    });
    let elapsed = start.elapsed();
    let compiles = importer
        .service()
        .map(|s| s.compile_log().to_vec())
        .unwrap_or_default();
    let hottest = importer
        .service()
        .and_then(|s| s.heat().ranked().first().map(|((hash, _), _)| *hash));
    let (timings, jit) = importer.shutdown();
    let done = done.map_err(|error| DemoError::Chain { mode, error })?;
    if let Some(error) = done.error {
        return Err(DemoError::Chain { mode, error });
    }
    let head = done.tree.head();
    Ok(Run {
        mode,
        wall: elapsed.saturating_sub(timings.settle),
        state_root: head.state.state_root(),
        code_hashes: head
            .state
            .accounts
            .iter()
            .map(|(a, s)| (*a, s.info.code_hash))
            .collect(),
        timings,
        blocks,
        service: jit.service,
        compiles,
        hottest,
    })
}

/// The demo's outcome.
#[derive(Debug)]
pub struct Report {
    /// The chain.
    pub generated: Generated,
    /// Time to build the chain.
    pub generation: Duration,
    /// The interpreter's import.
    pub interpreter: Run,
    /// kiln's import.
    pub kiln: Run,
    /// The chain folder.
    pub chain_dir: PathBuf,
    /// The picture.
    pub picture: PathBuf,
}

impl Report {
    /// kiln's EVM throughput over the interpreter's.
    pub fn evm_speedup(&self) -> f64 {
        self.kiln.mgas_per_sec() / self.interpreter.mgas_per_sec().max(1e-9)
    }

    /// The interpreter's whole import time over kiln's (waits for the service left out).
    pub fn import_speedup(&self) -> f64 {
        self.interpreter.wall.as_secs_f64() / self.kiln.wall.as_secs_f64().max(1e-9)
    }

    /// Contract name of a code hash, if the demo deployed it.
    pub fn name_of(&self, hash: B256) -> Option<&'static str> {
        self.generated
            .names
            .iter()
            .find(|(a, _)| self.kiln.code_hashes.get(a) == Some(&hash))
            .map(|(_, n)| *n)
    }

    /// The hottest contract's name and the time from the first block that ran it to its
    /// optimised code's installation (compilation and verification).
    pub fn hottest_to_optimised(&self) -> Option<(&'static str, Duration)> {
        let hash = self.kiln.hottest?;
        let event = self
            .kiln
            .compiles
            .iter()
            .find(|e| e.key.0 == hash && e.tier == Tier::Optimised)?;
        Some((
            self.name_of(hash).unwrap_or("(unnamed)"),
            event.since_first_sight?,
        ))
    }

    /// Lines naming each compilation: contract, tier, canonical height, compile time, time since
    /// the contract first ran.
    pub fn compile_lines(&self) -> Vec<String> {
        self.kiln
            .compiles
            .iter()
            .map(|e| {
                let name = self.name_of(e.key.0).unwrap_or("(unnamed)");
                let tier = match e.tier {
                    Tier::Optimised => "optimised",
                    _ => "quick",
                };
                let how = if e.shared {
                    "family function of a sibling".to_owned()
                } else {
                    format!("compile {:>7.1} ms", e.elapsed.as_secs_f64() * 1e3)
                };
                let seen = e.since_first_sight.map_or(String::new(), |t| {
                    format!("{:.2} s after first sight", t.as_secs_f64())
                });
                format!(
                    "{name:<24} {tier:<9} at block {:>4}  {how:<28}  {seen:<24}  ({})",
                    e.head, e.key.0
                )
            })
            .collect()
    }
}

/// Builds the chain, writes it to `opts.out/chain`, imports it twice, checks both runs end on
/// the same state root and draws `opts.out/demo.svg`.
pub fn run(opts: &DemoOptions, progress: &mut dyn FnMut(&str)) -> Result<Report, DemoError> {
    let start = Instant::now();
    progress("building the demo chain");
    let generated = generate(opts)?;
    let generation = start.elapsed();
    let chain_dir = opts.out.join("chain");
    generated.source.write(&chain_dir)?;
    progress("importing with the interpreter");
    let interpreter = import(
        &generated.source,
        ImportMode::Interpreter,
        &opts.service,
        false,
    )?;
    progress("importing with kiln's hot-code service");
    let kiln = import(
        &generated.source,
        ImportMode::Tiered,
        &opts.service,
        opts.settle,
    )?;
    if interpreter.state_root != kiln.state_root {
        return Err(DemoError::Roots {
            interpreter: interpreter.state_root,
            kiln: kiln.state_root,
        });
    }
    let picture = opts.out.join("demo.svg");
    let mut report = Report {
        generated,
        generation,
        interpreter,
        kiln,
        chain_dir,
        picture: picture.clone(),
    };
    plot::draw(&picture, &report).map_err(|why| DemoError::Plot {
        path: picture.clone(),
        why,
    })?;
    report.picture = picture;
    Ok(report)
}

/// The chain folder of a finished demo.
pub fn chain_dir(out: &Path) -> PathBuf {
    out.join("chain")
}
