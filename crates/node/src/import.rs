//! The importer: each test's blocks handed to the node as a consensus client would (new payload,
//! then forkchoice to it when valid), every outcome compared with the fixture's expectation,
//! and the canonical chain's changes reported to the hot-code service and any observer.

use crate::{
    chain::{BlockTree, ImportedBlock},
    decode::{decode_all, DecodedBlock},
    error::{BlockError, ImportError, Reject},
    execute::{execute_block, executor_factory, KilnBlockExecutorFactory},
    fixture::{BlockchainTest, FixtureAccount, TestFile},
    genesis::genesis_tree,
    state::CodeStore,
    validate::{self, ExecutionOutcome},
};
use alloy_primitives::{Address, B256, U256};
use kiln_compiler::CompileOptions;
use kiln_evm::KilnEvmFactory;
use kiln_exex::{BlockRecord, Notification, Service, ServiceConfig, ServiceStats};
use kiln_runtime::{Backend, CompilePolicy, Runtime};
use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

pub(crate) const TARGET: &str = "kiln::node";

/// How long [`ImportOptions::settle`] waits for the service after one notification.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How blocks are executed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ImportMode {
    /// revm's interpreter ([`Runtime::interpreter`]).
    #[default]
    Interpreter,
    /// Each code compiled the first time it runs ([`Runtime::jit`]).
    Jit,
    /// As a node runs: a lookup-only JIT runtime filled by the hot-code service, which is told
    /// every canonical-chain change.
    Tiered,
}

impl fmt::Display for ImportMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Interpreter => "interpreter",
            Self::Jit => "jit",
            Self::Tiered => "tiered",
        })
    }
}

/// What to import and how.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// Execution mode.
    pub mode: ImportMode,
    /// Only tests whose file path or name contains this substring.
    pub filter: Option<String>,
    /// The hot-code service's settings ([`ImportMode::Tiered`] only).
    pub service: ServiceConfig,
    /// Tiered mode: after each notification, wait until the service is idle (its compilations
    /// and verification replays done), so that what it compiled serves the next block. A node
    /// never waits; this makes runs repeatable.
    pub settle: bool,
}

impl Default for ImportOptions {
    /// Interpreter mode, every test, and a service that compiles in this process.
    fn default() -> Self {
        Self {
            mode: ImportMode::default(),
            filter: None,
            service: ServiceConfig {
                isolation: false,
                ..ServiceConfig::default()
            },
            settle: false,
        }
    }
}

/// Told about every change of the canonical chain.
pub trait ImportObserver {
    /// The canonical chain changed.
    fn on_notification(&mut self, notification: &Notification);
}

impl ImportObserver for Vec<Notification> {
    fn on_notification(&mut self, notification: &Notification) {
        self.push(notification.clone());
    }
}

impl ImportObserver for Service {
    fn on_notification(&mut self, notification: &Notification) {
        Service::on_notification(self, notification);
    }
}

/// One way a test went wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Position of the block in the fixture (none for the test's genesis or end state).
    pub block: Option<usize>,
    /// The block's number, when known.
    pub number: Option<u64>,
    /// What the fixture expects.
    pub expected: String,
    /// What the node did.
    pub got: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.block, self.number) {
            (Some(i), Some(n)) => write!(f, "block {i} (#{n}): ")?,
            (Some(i), None) => write!(f, "block {i}: ")?,
            _ => write!(f, "end state: ")?,
        }
        write!(f, "expected {}, got {}", self.expected, self.got)
    }
}

/// How a test went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every block did what the fixture expects, and the end state matches.
    Passed,
    /// Something did not.
    Failed(Vec<Failure>),
    /// Not run, and why.
    Skipped(String),
}

/// The result of one test.
#[derive(Clone, Debug)]
pub struct TestReport {
    /// The fixture file.
    pub file: PathBuf,
    /// The test's name.
    pub name: String,
    /// Blocks in the test.
    pub blocks: usize,
    /// How it went.
    pub outcome: Outcome,
}

/// Where import time went.
#[derive(Clone, Debug, Default)]
pub struct Timings {
    /// Hex and RLP decoding, block hashing and sender recovery.
    pub decode: Duration,
    /// Block execution (system calls, transactions, withdrawals).
    pub execution: Duration,
    /// Post-state, storage and state roots, receipts root and bloom.
    pub roots: Duration,
    /// Everything else: reading files, genesis, header checks, forkchoice, notifications.
    pub other: Duration,
    /// Of `other`, the time spent waiting for the hot-code service to go idle (`settle`).
    pub settle: Duration,
    /// Blocks executed to the end (valid or rejected after execution).
    pub blocks_executed: u64,
    /// Gas those blocks used.
    pub gas: u64,
}

impl Timings {
    /// Gas executed per second of execution time, in millions.
    pub fn mgas_per_sec(&self) -> f64 {
        let secs = self.execution.as_secs_f64();
        if secs > 0.0 {
            self.gas as f64 / secs / 1e6
        } else {
            0.0
        }
    }

    /// The sum of all parts.
    pub fn total(&self) -> Duration {
        self.decode + self.execution + self.roots + self.other
    }
}

impl fmt::Display for Timings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        write!(
            f,
            "{:.0} ms: decode + senders {:.0} ms, execution {:.0} ms ({} blocks, {:.1} Mgas, {:.1} Mgas/s), roots {:.0} ms, other {:.0} ms",
            ms(self.total()),
            ms(self.decode),
            ms(self.execution),
            self.blocks_executed,
            self.gas as f64 / 1e6,
            self.mgas_per_sec(),
            ms(self.roots),
            ms(self.other),
        )?;
        if !self.settle.is_zero() {
            write!(
                f,
                " (of which waiting for the service {:.0} ms)",
                ms(self.settle)
            )?;
        }
        Ok(())
    }
}

/// What the runtime ran, for reporting.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JitStats {
    /// Frames that ran compiled code.
    pub compiled_frames: u64,
    /// Frames that ran on the interpreter.
    pub interpreted_frames: u64,
    /// Compilations by the runtime itself (first sight).
    pub compilations: u64,
    /// The hot-code service's counters (tiered mode).
    pub service: Option<ServiceStats>,
}

/// The result of an import run.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// One report per test, in order.
    pub reports: Vec<TestReport>,
    /// Tests that passed.
    pub passed: usize,
    /// Tests that failed.
    pub failed: usize,
    /// Tests skipped.
    pub skipped: usize,
    /// Where the time went.
    pub timings: Timings,
    /// What the runtime ran.
    pub jit: JitStats,
}

impl Summary {
    fn add(&mut self, report: TestReport) {
        match report.outcome {
            Outcome::Passed => self.passed += 1,
            Outcome::Failed(_) => self.failed += 1,
            Outcome::Skipped(_) => self.skipped += 1,
        }
        self.reports.push(report);
    }
}

/// Progress of an import run, for a progress bar or a log.
#[derive(Debug)]
pub enum Progress<'a> {
    /// A test finished.
    Test(&'a TestReport),
    /// A file finished.
    File(&'a Path),
}

/// Imports blockchain tests through kiln's EVM. Owns the runtime and, in tiered mode, the
/// hot-code service; [`Importer::shutdown`] stops both.
pub struct Importer {
    pub(crate) factory: KilnBlockExecutorFactory,
    pub(crate) runtime: Arc<Runtime>,
    pub(crate) service: Option<Service>,
    /// Where the service finds code it did not see deployed (the tests' genesis code).
    pub(crate) code_store: Option<Arc<CodeStore>>,
    observer: Option<Box<dyn ImportObserver>>,
    settle: bool,
    pub(crate) timings: Timings,
}

impl fmt::Debug for Importer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Importer")
            .field("service", &self.service)
            .field("timings", &self.timings)
            .finish_non_exhaustive()
    }
}

impl Importer {
    /// An importer executing with `runtime`, telling `service` (if any) every canonical-chain
    /// change. A service given here finds only code deployed by blocks; [`Importer::for_options`]
    /// also gives its service the tests' genesis code.
    pub fn new(runtime: Arc<Runtime>, service: Option<Service>) -> Self {
        Self {
            factory: executor_factory(KilnEvmFactory::new(runtime.clone())),
            runtime,
            service,
            code_store: None,
            observer: None,
            settle: false,
            timings: Timings::default(),
        }
    }

    /// The importer `opts.mode` calls for.
    pub fn for_options(opts: &ImportOptions) -> Result<Self, ImportError> {
        Ok(match opts.mode {
            ImportMode::Interpreter => Self::new(Runtime::interpreter(), None),
            ImportMode::Jit => Self::new(Runtime::jit(), None),
            ImportMode::Tiered => {
                opts.service.validate()?;
                let runtime = Arc::new(Runtime::new(
                    Backend::Jit,
                    CompilePolicy::LookupOnly,
                    CompileOptions::default(),
                ));
                let code_store = Arc::new(CodeStore::default());
                let service = Service::new(
                    runtime.clone(),
                    opts.service.clone(),
                    Some(code_store.clone()),
                );
                let mut importer = Self::new(runtime, Some(service));
                importer.code_store = Some(code_store);
                importer.settle = opts.settle;
                importer
            }
        })
    }

    /// Also tells `observer` every canonical-chain change.
    pub fn with_observer(mut self, observer: Box<dyn ImportObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The runtime blocks execute with.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// The hot-code service, in tiered mode.
    pub fn service(&self) -> Option<&Service> {
        self.service.as_ref()
    }

    /// The hot-code service, in tiered mode, to attach a status sink or read its control.
    pub fn service_mut(&mut self) -> Option<&mut Service> {
        self.service.as_mut()
    }

    /// Where the time went so far.
    pub fn timings(&self) -> &Timings {
        &self.timings
    }

    /// Imports every test of one file (those `filter` selects).
    pub fn import_file(
        &mut self,
        path: &Path,
        filter: Option<&str>,
        on_report: &mut dyn FnMut(&TestReport),
    ) -> Result<(), ImportError> {
        let start = Instant::now();
        let text = std::fs::read_to_string(path).map_err(|source| ImportError::Io {
            path: path.to_owned(),
            source,
        })?;
        let file: TestFile = serde_json::from_str(&text).map_err(|source| ImportError::Json {
            path: path.to_owned(),
            source,
        })?;
        self.timings.other += start.elapsed();
        let path_str = path.to_string_lossy();
        for (name, test) in &file {
            if filter.is_some_and(|f| !path_str.contains(f) && !name.contains(f)) {
                continue;
            }
            let report = self.import_test(path, name, test);
            on_report(&report);
        }
        Ok(())
    }

    /// Imports one test and compares every block's outcome and the end state with the
    /// fixture's.
    pub fn import_test(&mut self, file: &Path, name: &str, test: &BlockchainTest) -> TestReport {
        let report = |outcome| TestReport {
            file: file.to_owned(),
            name: name.to_owned(),
            blocks: test.blocks.len(),
            outcome,
        };
        if test.network != "Cancun" {
            return report(Outcome::Skipped(format!("network {}", test.network)));
        }
        if let Some(engine) = test.seal_engine.as_deref().filter(|e| *e != "NoProof") {
            return report(Outcome::Skipped(format!("seal engine {engine}")));
        }
        let span = tracing::debug_span!(target: TARGET, "test", name);
        let _entered = span.enter();
        let start = Instant::now();
        let mut tree = match genesis_tree(&self.factory, test) {
            Ok(tree) => tree,
            Err(e) => {
                return report(Outcome::Failed(vec![Failure {
                    block: None,
                    number: Some(0),
                    expected: "a valid genesis".to_owned(),
                    got: ImportError::from(e).to_string(),
                }]))
            }
        };
        if let Some(store) = &self.code_store {
            store.extend(&tree.codes);
        }
        self.timings.other += start.elapsed();

        let start = Instant::now();
        let decoded = decode_all(
            test.blocks
                .iter()
                .map(|b| b.rlp.as_str())
                .collect::<Vec<_>>(),
        );
        self.timings.decode += start.elapsed();

        let mut failures = Vec::new();
        for (index, (fixture, decoded)) in test.blocks.iter().zip(decoded).enumerate() {
            let expected = fixture.expected_exceptions();
            let result = self.import_block(&mut tree, index, decoded);
            let start = Instant::now();
            match (result, expected) {
                (Ok(block), None) => self.forkchoice(&mut tree, block.hash),
                (Ok(block), Some(expected)) => {
                    tracing::debug!(target: TARGET, index, hash = %block.hash, "block expected invalid was accepted");
                    failures.push(Failure {
                        block: Some(index),
                        number: Some(block.number),
                        expected: expected.join("|"),
                        got: "block accepted".to_owned(),
                    });
                }
                (Err(e), None) => {
                    tracing::debug!(target: TARGET, error = %e, "valid block rejected");
                    failures.push(Failure {
                        block: Some(index),
                        number: e.number,
                        expected: "valid block".to_owned(),
                        got: format!("{}: {e}", e.reason.exceptions()[0]),
                    });
                }
                (Err(e), Some(expected)) => {
                    tracing::debug!(target: TARGET, error = %e, "invalid block rejected");
                    if !e.reason.matches(&expected) {
                        failures.push(Failure {
                            block: Some(index),
                            number: e.number,
                            expected: expected.join("|"),
                            got: format!("{}: {e}", e.reason.exceptions().join("|")),
                        });
                    }
                }
            }
            self.timings.other += start.elapsed();
        }

        let start = Instant::now();
        if tree.get(&test.lastblockhash).is_some() {
            self.forkchoice(&mut tree, test.lastblockhash);
            failures.extend(compare_end_state(&tree, test));
        } else {
            failures.push(Failure {
                block: None,
                number: None,
                expected: format!("head {}", test.lastblockhash),
                got: "no such block imported".to_owned(),
            });
        }
        self.timings.other += start.elapsed();
        report(if failures.is_empty() {
            Outcome::Passed
        } else {
            Outcome::Failed(failures)
        })
    }

    /// "new payload": validates and executes one block on its parent's state and adds it to
    /// the tree (the head does not move).
    pub(crate) fn import_block(
        &mut self,
        tree: &mut BlockTree,
        index: usize,
        decoded: Result<DecodedBlock, Reject>,
    ) -> Result<BlockRecord, Box<BlockError>> {
        let decoded = decoded.map_err(|reason| {
            Box::new(BlockError {
                index,
                number: None,
                hash: None,
                reason,
            })
        })?;
        if let Some(known) = tree.get(&decoded.hash) {
            return Ok(known.record.clone());
        }
        let block = self.process_block(tree, index, decoded)?;
        let record = block.record.clone();
        tree.insert(block);
        Ok(record)
    }

    /// Checks and executes a block on its parent's state (a block of `tree`) and computes its
    /// post-state, without adding it to the tree.
    pub(crate) fn process_block(
        &mut self,
        tree: &mut BlockTree,
        index: usize,
        decoded: DecodedBlock,
    ) -> Result<ImportedBlock, Box<BlockError>> {
        let DecodedBlock {
            block,
            hash,
            senders,
        } = decoded;
        let reject = |reason| {
            Box::new(BlockError {
                index,
                number: Some(block.header.number),
                hash: Some(hash),
                reason,
            })
        };
        let start = Instant::now();
        let header = &block.header;
        validate::header_standalone(header).map_err(reject)?;
        let parent = tree
            .get(&header.parent_hash)
            .ok_or(Reject::UnknownParent(header.parent_hash))
            .map_err(reject)?;
        validate::header_against_parent(header, &parent.header).map_err(reject)?;
        validate::body(&block).map_err(reject)?;
        let senders = senders.map_err(reject)?;
        let parent_state = parent.state.clone();
        let ancestors = tree.ancestor_hashes(header.parent_hash);
        self.timings.other += start.elapsed();

        let start = Instant::now();
        let executed = execute_block(
            &self.factory,
            &block,
            &senders,
            parent_state.database(&tree.codes, &ancestors),
        );
        self.timings.execution += start.elapsed();
        let executed = executed.map_err(reject)?;
        self.timings.blocks_executed += 1;
        self.timings.gas += executed.gas_used;

        let start = Instant::now();
        validate::transactions_root(&block).map_err(reject)?;
        let checked = validate::post_execution(
            header,
            &ExecutionOutcome {
                receipts: &executed.receipts,
                gas_used: executed.gas_used,
                blob_gas_used: executed.blob_gas_used,
            },
        );
        let (state, stats) = parent_state.apply(&executed.bundle, &mut tree.codes);
        let root = state.state_root();
        self.timings.roots += start.elapsed();
        checked.map_err(reject)?;
        validate::state_root(header, root).map_err(reject)?;
        tracing::trace!(target: TARGET, number = header.number, %hash, accounts = stats.accounts, storage_roots = stats.storage_roots, "block imported");

        let record = executed.record(header, hash);
        Ok(ImportedBlock {
            header: block.header,
            hash,
            state: Arc::new(state),
            record,
        })
    }

    /// "forkchoice updated": moves the head and reports the change.
    pub(crate) fn forkchoice(&mut self, tree: &mut BlockTree, hash: B256) {
        let Ok(Some(notification)) = tree.forkchoice(hash) else {
            return;
        };
        self.notify(&notification);
    }

    /// Tells the service and the observer a canonical-chain change.
    pub(crate) fn notify(&mut self, notification: &Notification) {
        if let Some(service) = &mut self.service {
            service.on_notification(notification);
            let start = Instant::now();
            if self.settle && !service.wait_idle(SETTLE_TIMEOUT) {
                tracing::warn!(target: TARGET, "the hot-code service did not go idle in {SETTLE_TIMEOUT:?}");
            }
            self.timings.settle += start.elapsed();
        }
        if let Some(observer) = &mut self.observer {
            observer.on_notification(notification);
        }
    }

    /// What the runtime (and service) ran so far.
    pub fn jit_stats(&self) -> JitStats {
        let stats = &self.runtime.stats;
        JitStats {
            compiled_frames: stats.compiled_frames.load(Ordering::Relaxed),
            interpreted_frames: stats.interpreted_frames.load(Ordering::Relaxed),
            compilations: stats.compilations.load(Ordering::Relaxed),
            service: self.service.as_ref().map(|s| s.stats().clone()),
        }
    }

    /// Stops the service's workers and the runtime's (every thread joined); returns the
    /// timings and what the runtime ran.
    pub fn shutdown(mut self) -> (Timings, JitStats) {
        if let Some(service) = &mut self.service {
            service.poll();
        }
        let jit = self.jit_stats();
        if let Some(service) = self.service.take() {
            service.shutdown();
        }
        self.runtime.shutdown();
        (self.timings, jit)
    }
}

/// The head's state against `postState` (every account's balance, nonce, code and storage, and
/// no other account) or `postStateHash`.
fn compare_end_state(tree: &BlockTree, test: &BlockchainTest) -> Vec<Failure> {
    let head = tree.head();
    let failure = |expected: String, got: String| Failure {
        block: None,
        number: Some(head.header.number),
        expected,
        got,
    };
    if let Some(root) = test.post_state_hash {
        let got = head.state.state_root();
        return if got == root {
            vec![]
        } else {
            vec![failure(format!("post-state root {root}"), got.to_string())]
        };
    }
    let Some(post) = &test.post_state else {
        return vec![];
    };
    let mut failures = Vec::new();
    for (address, expected) in post {
        let got = account(tree, address);
        if got.as_ref() != Some(expected) {
            failures.push(failure(
                format!("account {address} {}", describe(Some(expected))),
                describe(got.as_ref()),
            ));
        }
    }
    for address in head.state.accounts.keys() {
        if !post.contains_key(address) {
            failures.push(failure(
                format!("no account {address}"),
                describe(account(tree, address).as_ref()),
            ));
        }
    }
    failures
}

/// An account of the head's state in the fixture's form.
fn account(tree: &BlockTree, address: &Address) -> Option<FixtureAccount> {
    let account = tree.head().state.accounts.get(address)?;
    Some(FixtureAccount {
        balance: account.info.balance,
        nonce: alloy_primitives::U64::from(account.info.nonce),
        code: tree
            .codes
            .get(&account.info.code_hash)
            .map(|c| c.original_bytes())
            .unwrap_or_default(),
        storage: account.storage.iter().map(|(k, v)| (*k, *v)).collect(),
    })
}

fn describe(account: Option<&FixtureAccount>) -> String {
    match account {
        None => "absent".to_owned(),
        Some(a) => {
            let storage: Vec<String> = a
                .storage
                .iter()
                .filter(|(_, v)| **v != U256::ZERO)
                .map(|(k, v)| format!("{k:#x}={v:#x}"))
                .collect();
            format!(
                "balance {} nonce {} code {} bytes storage {{{}}}",
                a.balance,
                a.nonce,
                a.code.len(),
                storage.join(", ")
            )
        }
    }
}

/// `paths`' files: files as given, folders searched recursively for `*.json` (sorted).
pub fn collect_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ImportError> {
    let mut files = Vec::new();
    for path in paths {
        let io = |source| ImportError::Io {
            path: path.clone(),
            source,
        };
        if std::fs::metadata(path).map_err(io)?.is_dir() {
            let mut found = Vec::new();
            walk_json(path, &mut found)?;
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

fn walk_json(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ImportError> {
    let io = |source| ImportError::Io {
        path: dir.to_owned(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.is_dir() {
            walk_json(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
    Ok(())
}

/// Imports every test of `files`, telling `progress` as tests and files finish.
pub fn import_files_with(
    files: &[PathBuf],
    opts: &ImportOptions,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Summary, ImportError> {
    let mut importer = Importer::for_options(opts)?;
    let mut summary = Summary::default();
    let mut result = Ok(());
    for file in files {
        let imported = importer.import_file(file, opts.filter.as_deref(), &mut |report| {
            progress(Progress::Test(report));
            summary.add(report.clone());
        });
        if let Err(e) = imported {
            result = Err(e);
            break;
        }
        progress(Progress::File(file));
    }
    // Stop every thread before reporting, error or not.
    let (timings, jit) = importer.shutdown();
    result?;
    summary.timings = timings;
    summary.jit = jit;
    tracing::info!(target: TARGET, mode = %opts.mode, passed = summary.passed, failed = summary.failed, skipped = summary.skipped, "import finished");
    Ok(summary)
}

/// Imports every test under `paths` (files, or folders searched for `*.json`).
pub fn import_paths(paths: &[PathBuf], opts: &ImportOptions) -> Result<Summary, ImportError> {
    let files = collect_files(paths)?;
    if files.is_empty() {
        return Err(ImportError::NoFiles(
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        ));
    }
    import_files_with(&files, opts, &mut |_| {})
}
