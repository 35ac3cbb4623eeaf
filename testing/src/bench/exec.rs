//! Running a workload in each mode, compiling its contracts first, and checking that every mode
//! observes the same thing as the interpreter before anything is timed.

use std::{
    collections::HashMap,
    fmt,
    path::PathBuf,
    sync::{atomic::Ordering, Arc, Weak},
    time::{Duration, Instant},
};

use alloy_primitives::{Address, Bytes, B256, U256};
use eyre::{bail, WrapErr};
use kiln_compiler::{compile_to_bytes, CompileOptions, Coverage, Emit};
use kiln_evm::{CoverageInspector, KilnEvm};
use kiln_runtime::{CompilePolicy, CompiledCode, Entry, Runtime, RuntimeConfig, Tier};
use revm::{
    context::{BlockEnv, CfgEnv, TxEnv},
    context_interface::{
        result::{EVMError, ExecResultAndState, ExecutionResult},
        ContextTr,
    },
    database::{EmptyDB, State},
    handler::MainnetEvm,
    primitives::hardfork::SpecId,
    state::EvmState,
    Context, Database, ExecuteCommitEvm, ExecuteEvm, InspectCommitEvm, InspectEvm, MainBuilder,
    MainContext,
};

use super::workload::Workload;
use crate::Mode;

/// The database every workload runs on: revm's `State`, as a node's block executor uses.
pub type BenchDb = State<EmptyDB>;
/// The context every EVM of a workload is built over.
pub type BenchCtx = Context<BlockEnv, TxEnv, CfgEnv, BenchDb>;
/// Error of one transaction.
pub type TxError = EVMError<<BenchDb as Database>::Error>;

/// A context over a fresh copy of the workload's pre-state.
fn context(workload: &Workload) -> BenchCtx {
    let state = State::builder()
        .with_cached_prestate((*workload.pre).clone())
        .build();
    Context::mainnet()
        .with_cfg(workload.cfg.clone())
        .with_block(workload.block.clone())
        .with_db(state)
}

/// An EVM of one mode with the workload's state, built once and reused for every repetition.
// Built once per workload and mode; boxing the larger variant would put an indirection in
// front of every timed transaction of one mode but not the other.
#[allow(clippy::large_enum_variant)]
pub enum Evm {
    /// Stock revm.
    Revm(MainnetEvm<BenchCtx>),
    /// kiln's EVM (interpreter, JIT or AOT depending on its runtime).
    Kiln(KilnEvm<BenchCtx>),
}

impl Evm {
    /// An EVM over a fresh copy of the workload's pre-state: stock revm without a runtime,
    /// kiln's EVM with one.
    pub fn new(workload: &Workload, runtime: Option<Arc<Runtime>>) -> Self {
        let ctx = context(workload);
        match runtime {
            None => Self::Revm(ctx.build_mainnet()),
            Some(runtime) => Self::Kiln(KilnEvm::new(ctx, runtime)),
        }
    }

    /// Executes `tx` without committing it: the state stays as it was, so the same transaction
    /// can run again. This is the timed operation.
    #[inline]
    pub fn transact(
        &mut self,
        tx: TxEnv,
    ) -> Result<ExecResultAndState<ExecutionResult, EvmState>, TxError> {
        match self {
            Self::Revm(evm) => evm.transact(tx),
            Self::Kiln(evm) => evm.transact(tx),
        }
    }

    /// Writes a transaction's state changes into the database.
    pub fn commit(&mut self, state: EvmState) {
        match self {
            Self::Revm(evm) => evm.commit(state),
            Self::Kiln(evm) => evm.commit(state),
        }
    }

    /// Adds a kiln EVM's frame counters to its runtime's now (they are otherwise added in
    /// batches).
    pub fn flush_stats(&mut self) {
        if let Self::Kiln(evm) = self {
            evm.flush_stats();
        }
    }

    /// The database (pre-state plus committed setup).
    pub fn db(&self) -> &BenchDb {
        match self {
            Self::Revm(evm) => evm.ctx.db(),
            Self::Kiln(evm) => evm.inner.ctx.db(),
        }
    }

    /// Runs `tx`, returns what it did, and commits it if `commit`.
    pub fn observe(&mut self, tx: TxEnv, commit: bool) -> TxObservation {
        match self.transact(tx) {
            Ok(ExecResultAndState { result, state }) => {
                let changes = normalize(&state);
                if commit {
                    self.commit(state);
                }
                TxObservation {
                    result: Ok(result),
                    state: changes,
                }
            }
            Err(err) => TxObservation {
                result: Err(err.to_string()),
                state: Vec::new(),
            },
        }
    }

    /// Commits the workload's setup transactions, returning what each did.
    pub fn run_setup(&mut self, workload: &Workload) -> Vec<TxObservation> {
        workload
            .setup
            .iter()
            .map(|tx| self.observe(tx.clone(), true))
            .collect()
    }

    /// Every non-empty legacy contract code in the database, by code hash, sorted so that
    /// compile order and reports are reproducible.
    pub fn contract_codes(&self) -> Vec<(B256, Bytes)> {
        let mut codes: Vec<(B256, Bytes)> = self
            .db()
            .cache
            .contracts
            .values()
            // EIP-7702 delegations are not code; dispatch never compiles them either.
            .filter(|code| code.is_legacy() && !code.is_empty())
            .map(|code| {
                let bytes = Bytes::copy_from_slice(code.original_byte_slice());
                (code.hash_slow(), bytes)
            })
            .collect();
        codes.sort_by_key(|(hash, _)| *hash);
        codes.dedup_by_key(|(hash, _)| *hash);
        codes
    }
}

/// One changed account after a transaction, in a form that compares across modes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountChange {
    /// Address.
    pub address: Address,
    /// Balance after.
    pub balance: U256,
    /// Nonce after.
    pub nonce: u64,
    /// Code hash after.
    pub code_hash: B256,
    /// Changed storage slots and their new values, sorted.
    pub storage: Vec<(U256, U256)>,
    /// Whether it self-destructed.
    pub selfdestructed: bool,
}

/// What one transaction did: its result (gas, refund, halt reason, output, logs) and its state
/// changes.
#[derive(Clone, Debug, PartialEq)]
pub struct TxObservation {
    /// The execution result, or the error text of a rejected transaction.
    pub result: Result<ExecutionResult, String>,
    /// Touched accounts, sorted by address.
    pub state: Vec<AccountChange>,
}

impl TxObservation {
    /// Gas used by the transaction, if it executed.
    pub fn gas_used(&self) -> Option<u64> {
        self.result.as_ref().ok().map(ExecutionResult::tx_gas_used)
    }

    /// `success`, `revert`, `halt: <reason>` or `rejected: <error>`.
    pub fn status(&self) -> String {
        match &self.result {
            Ok(ExecutionResult::Success { .. }) => "success".to_owned(),
            Ok(ExecutionResult::Revert { .. }) => "revert".to_owned(),
            Ok(ExecutionResult::Halt { reason, .. }) => format!("halt: {reason:?}"),
            Err(err) => format!("rejected: {err}"),
        }
    }
}

fn normalize(state: &EvmState) -> Vec<AccountChange> {
    let mut out: Vec<AccountChange> = state
        .iter()
        .filter(|(_, account)| account.is_touched())
        .map(|(address, account)| {
            let mut storage: Vec<(U256, U256)> = account
                .storage
                .iter()
                .filter(|(_, slot)| slot.is_changed())
                .map(|(key, slot)| (*key, slot.present_value))
                .collect();
            storage.sort();
            AccountChange {
                address: *address,
                balance: account.info.balance,
                nonce: account.info.nonce,
                code_hash: account.info.code_hash,
                storage,
                selfdestructed: account.is_selfdestructed(),
            }
        })
        .collect();
    out.sort_by_key(|change| change.address);
    out
}

/// Everything a mode observed on a workload: the setup transactions, then the timed one.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    /// Setup transactions, in order.
    pub setup: Vec<TxObservation>,
    /// The timed transaction.
    pub timed: TxObservation,
}

/// A mode that did something different from the interpreter.
#[derive(Clone, Debug)]
pub struct Disagreement {
    /// The workload.
    pub workload: String,
    /// The mode that differs.
    pub mode: Mode,
    /// Each difference, e.g. `timed tx: gas used 21004 (interpreter) vs 21010 (jit)`.
    pub differences: Vec<String>,
}

impl fmt::Display for Disagreement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} differs from the interpreter: {}",
            self.workload,
            self.mode,
            self.differences.join("; ")
        )
    }
}

/// Compares what `mode` observed with the interpreter's `reference`; `None` when they agree on
/// everything observable (gas, refund, status, output, logs, state).
pub fn check_agreement(
    workload: &str,
    reference: &Observed,
    mode: Mode,
    observed: &Observed,
) -> Option<Disagreement> {
    let mut differences = Vec::new();
    if reference.setup.len() != observed.setup.len() {
        differences.push(format!(
            "{} setup transactions (interpreter) vs {} ({mode})",
            reference.setup.len(),
            observed.setup.len()
        ));
    }
    let pairs = reference
        .setup
        .iter()
        .zip(&observed.setup)
        .enumerate()
        .map(|(i, pair)| (format!("setup tx {i}"), pair))
        .chain(std::iter::once((
            "timed tx".to_owned(),
            (&reference.timed, &observed.timed),
        )));
    for (label, (want, got)) in pairs {
        for difference in tx_differences(want, got, mode) {
            differences.push(format!("{label}: {difference}"));
        }
    }
    (!differences.is_empty()).then(|| Disagreement {
        workload: workload.to_owned(),
        mode,
        differences,
    })
}

/// The differences between two observations of one transaction, most telling first.
fn tx_differences(want: &TxObservation, got: &TxObservation, mode: Mode) -> Vec<String> {
    let mut out = Vec::new();
    let vs = |what: &str, a: &dyn fmt::Display, b: &dyn fmt::Display| {
        format!("{what} {a} (interpreter) vs {b} ({mode})")
    };
    match (&want.result, &got.result) {
        (Err(a), Err(b)) if a == b => {}
        (Err(_), _) | (_, Err(_)) => out.push(vs("status", &want.status(), &got.status())),
        (Ok(a), Ok(b)) => {
            if want.status() != got.status() {
                out.push(vs("status", &want.status(), &got.status()));
            }
            if a.tx_gas_used() != b.tx_gas_used() {
                out.push(vs("gas used", &a.tx_gas_used(), &b.tx_gas_used()));
            } else if a.gas() != b.gas() {
                // Same total but a different refund or floor split.
                out.push(vs("gas accounting", a.gas(), b.gas()));
            }
            if a.output() != b.output() {
                let show =
                    |o: Option<&Bytes>| o.map_or_else(|| "none".to_owned(), |o| o.to_string());
                out.push(vs("output", &show(a.output()), &show(b.output())));
            }
            if a.logs() != b.logs() {
                let first = a
                    .logs()
                    .iter()
                    .zip(b.logs())
                    .position(|(x, y)| x != y)
                    .map_or_else(String::new, |i| format!(", first difference at log {i}"));
                out.push(format!(
                    "logs differ: {} (interpreter) vs {} ({mode}){first}",
                    a.logs().len(),
                    b.logs().len()
                ));
            }
        }
    }
    out.extend(state_differences(&want.state, &got.state, mode));
    out
}

fn state_differences(want: &[AccountChange], got: &[AccountChange], mode: Mode) -> Vec<String> {
    let mut out = Vec::new();
    let by_address = |changes: &[AccountChange]| -> HashMap<Address, AccountChange> {
        changes.iter().map(|c| (c.address, c.clone())).collect()
    };
    let (want_map, got_map) = (by_address(want), by_address(got));
    let mut addresses: Vec<Address> = want_map.keys().chain(got_map.keys()).copied().collect();
    addresses.sort();
    addresses.dedup();
    for address in addresses {
        match (want_map.get(&address), got_map.get(&address)) {
            (Some(_), None) => {
                out.push(format!("state: {address} changed only in the interpreter"))
            }
            (None, Some(_)) => out.push(format!("state: {address} changed only in {mode}")),
            (Some(a), Some(b)) if a != b => {
                let mut fields = Vec::new();
                if a.balance != b.balance {
                    fields.push(format!("balance {} vs {}", a.balance, b.balance));
                }
                if a.nonce != b.nonce {
                    fields.push(format!("nonce {} vs {}", a.nonce, b.nonce));
                }
                if a.code_hash != b.code_hash {
                    fields.push(format!("code hash {} vs {}", a.code_hash, b.code_hash));
                }
                if a.selfdestructed != b.selfdestructed {
                    fields.push(format!(
                        "selfdestructed {} vs {}",
                        a.selfdestructed, b.selfdestructed
                    ));
                }
                let slots_a: HashMap<U256, U256> = a.storage.iter().copied().collect();
                let slots_b: HashMap<U256, U256> = b.storage.iter().copied().collect();
                let mut keys: Vec<U256> = slots_a.keys().chain(slots_b.keys()).copied().collect();
                keys.sort();
                keys.dedup();
                for key in keys {
                    let (x, y) = (slots_a.get(&key), slots_b.get(&key));
                    if x != y {
                        let show = |v: Option<&U256>| {
                            v.map_or_else(|| "unchanged".to_owned(), |v| format!("{v:#x}"))
                        };
                        fields.push(format!("slot {key:#x} {} vs {}", show(x), show(y)));
                    }
                }
                out.push(format!(
                    "state: {address}: {} (interpreter vs {mode})",
                    fields.join(", ")
                ));
            }
            _ => {}
        }
    }
    out
}

/// What compiling a workload's contracts cost in one mode.
#[derive(Clone, Debug, Default)]
pub struct CompileReport {
    /// Contract codes compiled (or looked up).
    pub codes: usize,
    /// Their total size in bytes.
    pub code_bytes: usize,
    /// Total size of the codes that compiled: the denominator of the compile time per KiB.
    pub compiled_bytes: usize,
    /// Compile time of those that compiled, in microseconds (measured when each code was first
    /// compiled; codes shared by several workloads are compiled once and charged to each).
    pub compile_micros: u64,
    /// Total size of the relocatable object files of the codes that compiled: the objects the
    /// JIT linked, or for AOT the objects its libraries were linked from.
    pub object_bytes: u64,
    /// Codes that did not compile, with the reason; they run on the interpreter.
    pub failures: Vec<String>,
    /// Codes not compiled because no profiled transaction ran them (`jit-profiled`).
    pub not_profiled: Vec<String>,
    /// `tiered`: the optimising compilations that replaced the baseline code, in microseconds
    /// (on the background thread; the execution path never waits for them).
    pub optimise_micros: Option<u64>,
    /// `tiered`: total size of the codes promoted: the denominator of the optimising time per
    /// KiB (code the baseline tier refuses is compiled at the default level at once, and its
    /// time is in `compile_micros`).
    pub promoted_bytes: usize,
    /// Other remarks on how the codes were compiled (`tiered`: code left at the baseline tier).
    pub notes: Vec<String>,
}

impl CompileReport {
    /// Compile time in milliseconds.
    pub fn compile_ms(&self) -> f64 {
        self.compile_micros as f64 / 1e3
    }

    /// Compile time per KiB of bytecode, in milliseconds.
    pub fn compile_ms_per_kib(&self) -> Option<f64> {
        per_kib(self.compile_micros, self.compiled_bytes)
    }

    /// `tiered`: optimising compile time in milliseconds.
    pub fn optimise_ms(&self) -> Option<f64> {
        self.optimise_micros.map(|m| m as f64 / 1e3)
    }

    /// `tiered`: optimising compile time per KiB of the code promoted, in milliseconds.
    pub fn optimise_ms_per_kib(&self) -> Option<f64> {
        self.optimise_micros
            .and_then(|m| per_kib(m, self.promoted_bytes))
    }
}

/// Milliseconds per KiB, if there are bytes.
fn per_kib(micros: u64, bytes: usize) -> Option<f64> {
    (bytes > 0).then(|| micros as f64 / 1e3 / (bytes as f64 / 1024.0))
}

/// JIT compilations per (mode, code) whose median time is reported.
const COMPILE_SAMPLES: usize = 3;

/// A compile result kept for reuse by later workloads.
#[derive(Clone)]
struct Compiled {
    entry: Entry,
    micros: u64,
}

/// Builds runtimes for the modes and compiles contract codes into them, once per (mode, code,
/// spec) for the whole run.
pub struct Compiler {
    options: CompileOptions,
    /// The AOT artifact directory of the whole run, shared by its AOT runtimes. Created on first
    /// use: only AOT runs need one.
    aot: Option<tempfile::TempDir>,
    /// Every runtime built, to shut down those still alive at the end ([`Self::shutdown`]).
    runtimes: Vec<Weak<Runtime>>,
    /// By mode, code, spec and profile (a code shared by workloads is profiled per workload).
    compiled: HashMap<(Mode, B256, SpecId, Option<Coverage>), Compiled>,
    objects: HashMap<(B256, SpecId, Option<Coverage>), Result<u64, String>>,
}

impl Compiler {
    /// A compiler with these options.
    pub fn new(options: CompileOptions) -> Self {
        Self {
            options,
            aot: None,
            runtimes: Vec::new(),
            compiled: HashMap::new(),
            objects: HashMap::new(),
        }
    }

    /// A fresh runtime for `mode` (`None` for stock revm), with an empty registry.
    ///
    /// Compiled modes other than `tiered` use [`CompilePolicy::LookupOnly`]: what was compiled
    /// ahead (by [`Self::fill`]) runs, and a code that is not in the registry (e.g. one-off init
    /// code) runs on the interpreter. `tiered` is the default runtime, which compiles on the
    /// execution path.
    pub fn runtime(&mut self, mode: Mode) -> eyre::Result<Option<Arc<Runtime>>> {
        let artifact_dir = match mode {
            Mode::Aot => Some(self.aot_dir()?),
            _ => None,
        };
        let Some(config) = mode.runtime_config(self.options, artifact_dir) else {
            return Ok(None);
        };
        let config = match mode {
            Mode::Tiered => config,
            _ => RuntimeConfig {
                policy: CompilePolicy::LookupOnly,
                ..config
            },
        };
        let runtime = config
            .build()
            .wrap_err_with(|| format!("cannot build the {mode} runtime"))?;
        self.runtimes.retain(|rt| rt.strong_count() > 0);
        self.runtimes.push(Arc::downgrade(&runtime));
        Ok(Some(runtime))
    }

    fn aot_dir(&mut self) -> eyre::Result<PathBuf> {
        if self.aot.is_none() {
            let temp = tempfile::Builder::new()
                .prefix("kiln-bench-aot-")
                .tempdir()
                .wrap_err("cannot create the AOT artifact directory")?;
            self.aot = Some(temp);
        }
        Ok(self
            .aot
            .as_ref()
            .expect("just set")
            .path()
            .join("artifacts"))
    }

    /// Shuts down every runtime this compiler built that is still alive: no background
    /// compilation outlives the run ([`Runtime::shutdown`]).
    pub fn shutdown(&mut self) {
        for runtime in self.runtimes.drain(..).filter_map(|rt| rt.upgrade()) {
            runtime.shutdown();
        }
    }

    /// Compiles `codes` for `spec` with `runtime`'s backend (or reuses an earlier compilation)
    /// and registers them, so that the workload runs compiled code from its first frame. With
    /// `profile`, each code is compiled from what ran of it, and one that did not run is not
    /// compiled.
    pub fn fill(
        &mut self,
        mode: Mode,
        runtime: &Runtime,
        spec: SpecId,
        codes: &[(B256, Bytes)],
        profile: Option<&CoverageInspector>,
    ) -> CompileReport {
        let mut report = CompileReport::default();
        for (hash, code) in codes {
            report.codes += 1;
            report.code_bytes += code.len();
            let coverage = match profile.map(|p| p.coverage(hash)) {
                None => None,
                Some(Some(c)) => Some(c.clone()),
                Some(None) => {
                    report.not_profiled.push(hash.to_string());
                    continue;
                }
            };
            let compiled = self
                .compiled
                .entry((mode, *hash, spec, coverage.clone()))
                .or_insert_with(|| {
                    // The median of a few compilations: one compilation's time varies widely
                    // from run to run on a shared machine. AOT compiles once: a second
                    // call would load the artifact the first one stored.
                    let samples = match runtime.backend() {
                        kiln_runtime::Backend::Aot(_) => 1,
                        _ => COMPILE_SAMPLES,
                    };
                    let mut micros = Vec::with_capacity(samples);
                    let mut result = None;
                    for _ in 0..samples {
                        let start = Instant::now();
                        let r = runtime.compile(*hash, spec, code, coverage.as_ref());
                        micros.push(start.elapsed().as_micros() as u64);
                        let failed = r.is_err();
                        result = Some(r);
                        if failed {
                            break;
                        }
                    }
                    micros.sort_unstable();
                    let micros = micros[micros.len() / 2];
                    let entry = match result.expect("compiled at least once") {
                        Ok(code) => Entry::Ready(Arc::new(code)),
                        Err(err) => Entry::Failed(err.to_string().into()),
                    };
                    Compiled { entry, micros }
                })
                .clone();
            runtime.insert(*hash, spec, compiled.entry.clone());
            match &compiled.entry {
                Entry::Ready(compiled_code) => {
                    report.compile_micros += compiled.micros;
                    report.compiled_bytes += code.len();
                    let size = match compiled_code.as_ref() {
                        // The JIT linked exactly this object.
                        CompiledCode::Jit(f) => Ok(f.object_bytes() as u64),
                        // A library holds more than the code; emit the object to compare.
                        CompiledCode::Aot(_) => self.object_size(*hash, spec, code, coverage),
                    };
                    match size {
                        Ok(size) => report.object_bytes += size,
                        Err(err) => report.failures.push(format!("{hash}: object: {err}")),
                    }
                }
                Entry::Failed(reason) => report.failures.push(format!("{hash}: {reason}")),
                // Built above from a compile result; never a profile or a verification.
                Entry::Profiling(_) | Entry::Verifying(_) => {
                    report.failures.push(format!("{hash}: not compiled"))
                }
            }
        }
        report
    }

    /// Size of the object file LLVM emits for `code`: the native code plus its relocations and
    /// symbols (what an AOT library was linked from).
    fn object_size(
        &mut self,
        hash: B256,
        spec: SpecId,
        code: &[u8],
        coverage: Option<Coverage>,
    ) -> Result<u64, String> {
        let options = self.options;
        self.objects
            .entry((hash, spec, coverage.clone()))
            .or_insert_with(|| {
                compile_to_bytes(code, spec, &options, coverage.as_ref(), Emit::Obj)
                    .map(|obj| obj.len() as u64)
                    .map_err(|e| e.to_string())
            })
            .clone()
    }
}

/// Runs the workload's setup and timed transaction on stock revm's inspector path with a
/// [`CoverageInspector`], on a fresh copy of the pre-state: what [`Mode::JitProfiled`] compiles
/// from.
fn profile(workload: &Workload) -> CoverageInspector {
    let mut evm = context(workload).build_mainnet_with_inspector(CoverageInspector::new());
    for tx in &workload.setup {
        // A failing setup transaction shows in the agreement check of every mode.
        let _ = evm.inspect_tx_commit(tx.clone());
    }
    let _ = evm.inspect_tx(workload.tx.clone());
    std::mem::take(&mut evm.inspector)
}

/// A mode set up on a workload: its EVM (pre-state plus setup, contracts compiled), what it
/// observed on the check run, and what compiling cost.
pub struct Contender {
    /// The mode.
    pub mode: Mode,
    /// The EVM, ready to run the timed transaction again.
    pub evm: Evm,
    /// What the check run observed.
    pub observed: Observed,
    /// Compile figures (compiled modes only).
    pub compile: Option<CompileReport>,
    /// Frames of the check run's timed transaction (kiln modes only).
    pub frames: Option<FrameCounts>,
    /// `tiered`: the timed transaction once more after promotion, on the optimised code (the
    /// check run ran the baseline tier); it must agree with the interpreter too.
    pub promoted: Option<TxObservation>,
}

/// How the frames of one run were executed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameCounts {
    /// Frames that ran compiled code.
    pub compiled: u64,
    /// Frames that ran on the interpreter.
    pub interpreted: u64,
    /// Runs of compiled frames (a frame resumed after a call runs again) that handed the frame
    /// to the interpreter mid-way (cold code of a profile-guided compilation, a failed section
    /// check, an unknown entry pc).
    pub handed_off: u64,
}

impl FrameCounts {
    fn of(rt: &Runtime) -> Self {
        Self {
            compiled: rt.stats.compiled_frames.load(Ordering::Relaxed),
            interpreted: rt.stats.interpreted_frames.load(Ordering::Relaxed),
            handed_off: rt.stats.handoffs.load(Ordering::Relaxed),
        }
    }

    fn since(self, before: Self) -> Self {
        Self {
            compiled: self.compiled - before.compiled,
            interpreted: self.interpreted - before.interpreted,
            handed_off: self.handed_off - before.handed_off,
        }
    }
}

impl Contender {
    /// Builds the EVM for `mode`, commits the setup, compiles the contracts, and runs the timed
    /// transaction once (the check run, which also warms the state cache).
    pub fn prepare(workload: &Workload, mode: Mode, compiler: &mut Compiler) -> eyre::Result<Self> {
        let runtime = compiler.runtime(mode)?;
        let mut evm = Evm::new(workload, runtime.clone());
        // Setup runs before compiling so that contracts it deploys are compiled too; its own
        // frames run on the interpreter (on baseline code under `tiered`, which compiles on
        // first sight), which is fine: it is not timed.
        let setup = evm.run_setup(workload);
        let compile = match &runtime {
            // Compiles on the execution path, as a node's default runtime does.
            Some(_) if mode == Mode::Tiered => None,
            Some(rt) if mode.compiles() => {
                let codes = evm.contract_codes();
                let profile = (mode == Mode::JitProfiled).then(|| profile(workload));
                Some(compiler.fill(mode, rt, workload.cfg.spec, &codes, profile.as_ref()))
            }
            _ => None,
        };
        evm.flush_stats();
        let before = runtime.as_deref().map(FrameCounts::of);
        let timed = evm.observe(workload.tx.clone(), false);
        evm.flush_stats();
        let frames = runtime
            .as_deref()
            .map(FrameCounts::of)
            .zip(before)
            .map(|(after, before)| after.since(before));
        let (compile, promoted) = match (&runtime, mode) {
            (Some(rt), Mode::Tiered) => {
                let (report, run) = promote(workload, &mut evm, rt)?;
                (Some(report), Some(run))
            }
            _ => (compile, None),
        };
        Ok(Self {
            mode,
            evm,
            observed: Observed { setup, timed },
            compile,
            frames,
            promoted,
        })
    }
}

/// How long `tiered` runs the timed transaction waiting for its codes' promotions.
const PROMOTION_DEADLINE: Duration = Duration::from_secs(600);

/// `tiered`: transactions without a change of tier after which baseline code that is not being
/// promoted is taken to stay (it ran only in setup, so the timed transaction never looks it up
/// again): twice what promotion takes for code the transaction runs, plus a margin.
const PROMOTION_QUIET_TXS: u64 =
    2 * kiln_runtime::DEFAULT_PROMOTE_AFTER * kiln_evm::dispatch::TIERED_RELOOKUP_TRANSACTIONS + 8;

/// `tiered`: after the check run (which compiled the baseline tier), runs the timed transaction
/// on the same EVM until every code it keeps running has been promoted, observes the optimised
/// run, and reports both compile times. The compile time is what the runtime spent before
/// promotion (setup's compilations included), the optimising time what promotion added.
fn promote(
    workload: &Workload,
    evm: &mut Evm,
    runtime: &Runtime,
) -> eyre::Result<(CompileReport, TxObservation)> {
    let spec = workload.cfg.spec;
    let codes = evm.contract_codes();
    let mut report = CompileReport {
        codes: codes.len(),
        code_bytes: codes.iter().map(|(_, c)| c.len()).sum(),
        compile_micros: runtime.stats.compile_micros.load(Ordering::Relaxed),
        ..CompileReport::default()
    };
    let tiers = || -> Vec<Option<Tier>> {
        codes
            .iter()
            .map(|(hash, _)| runtime.tier(*hash, spec))
            .collect()
    };
    let before = tiers();
    let (mut last, mut quiet) = (before.clone(), 0u64);
    let start = Instant::now();
    loop {
        let promoting = last.contains(&Some(Tier::Promoting));
        if !promoting && !last.contains(&Some(Tier::Baseline)) {
            break;
        }
        if !promoting && quiet >= PROMOTION_QUIET_TXS {
            break;
        }
        if start.elapsed() > PROMOTION_DEADLINE {
            bail!(
                "{}: tiered: baseline code not promoted within {} s",
                workload.name,
                PROMOTION_DEADLINE.as_secs()
            );
        }
        evm.transact(workload.tx.clone())
            .map_err(|e| eyre::eyre!("{}: tiered: transaction failed: {e}", workload.name))?;
        if promoting {
            // Leave the core to the background compiler, as a node between blocks.
            std::thread::sleep(Duration::from_millis(1));
        }
        let now = tiers();
        quiet = if now == last { quiet + 1 } else { 0 };
        last = now;
    }
    let optimised_run = evm.observe(workload.tx.clone(), false);
    let mut promoted_bytes = 0;
    for (((hash, code), was), now) in codes.iter().zip(&before).zip(&last) {
        match runtime.get(*hash, spec) {
            Some(Entry::Ready(f)) => {
                report.compiled_bytes += code.len();
                if let CompiledCode::Jit(f) = f.as_ref() {
                    report.object_bytes += f.object_bytes() as u64;
                }
                if matches!(was, Some(Tier::Baseline | Tier::Promoting))
                    && *now == Some(Tier::Optimised)
                {
                    promoted_bytes += code.len();
                }
                match now {
                    Some(Tier::BaselineKept) => report.notes.push(format!(
                        "{hash}: the optimising compilation failed; timed on baseline code"
                    )),
                    Some(Tier::Baseline) => report.notes.push(format!(
                        "{hash}: not promoted (the timed transaction does not keep running it); baseline code"
                    )),
                    _ => {}
                }
            }
            Some(Entry::Failed(reason)) => report.failures.push(format!("{hash}: {reason}")),
            // Never ran (or ran only as init code): nothing to report.
            _ => {}
        }
    }
    if runtime.is_tiered() {
        report.optimise_micros =
            Some(runtime.stats.compile_micros.load(Ordering::Relaxed) - report.compile_micros);
        report.promoted_bytes = promoted_bytes;
    }
    Ok((report, optimised_run))
}

#[cfg(test)]
mod tests {
    use super::*;
    use revm::context_interface::result::{Output, ResultGas, SuccessReason};

    fn success(gas: u64, output: &[u8]) -> TxObservation {
        TxObservation {
            result: Ok(ExecutionResult::Success {
                reason: SuccessReason::Return,
                gas: ResultGas::default().with_total_gas_spent(gas),
                logs: Vec::new(),
                output: Output::Call(Bytes::copy_from_slice(output)),
            }),
            state: vec![AccountChange {
                address: Address::repeat_byte(0xcc),
                balance: U256::ZERO,
                nonce: 1,
                code_hash: B256::ZERO,
                storage: vec![(U256::from(1), U256::from(2))],
                selfdestructed: false,
            }],
        }
    }

    fn observed(timed: TxObservation) -> Observed {
        Observed {
            setup: Vec::new(),
            timed,
        }
    }

    #[test]
    fn identical_outcomes_agree() {
        let a = observed(success(50_000, b"ok"));
        assert!(check_agreement("w", &a, Mode::Jit, &a.clone()).is_none());
    }

    #[test]
    fn different_gas_is_a_disagreement() {
        let a = observed(success(50_000, b"ok"));
        let b = observed(success(50_003, b"ok"));
        let d = check_agreement("w", &a, Mode::Jit, &b).expect("gas differs");
        assert_eq!(d.mode, Mode::Jit);
        assert_eq!(d.differences.len(), 1, "{d}");
        assert!(
            d.to_string()
                .contains("timed tx: gas used 50000 (interpreter) vs 50003 (jit)"),
            "{d}"
        );
    }

    #[test]
    fn different_output_and_storage_are_disagreements() {
        let a = observed(success(50_000, b"ok"));
        let mut other = success(50_000, b"no");
        other.state[0].storage[0].1 = U256::from(3);
        let d = check_agreement("w", &a, Mode::Aot, &observed(other)).expect("differs");
        let text = d.to_string();
        assert!(
            text.contains("output 0x6f6b (interpreter) vs 0x6e6f (aot)"),
            "{text}"
        );
        assert!(text.contains("slot 0x1 0x2 vs 0x3"), "{text}");
    }

    #[test]
    fn rejected_versus_executed_is_a_disagreement() {
        let a = observed(success(50_000, b"ok"));
        let b = observed(TxObservation {
            result: Err("lack of funds".into()),
            state: Vec::new(),
        });
        let d = check_agreement("w", &a, Mode::Revm, &b).expect("differs");
        assert!(
            d.to_string()
                .contains("status success (interpreter) vs rejected"),
            "{d}"
        );
    }

    #[test]
    fn a_differing_setup_transaction_is_reported() {
        let mut a = observed(success(50_000, b"ok"));
        a.setup.push(success(30_000, b""));
        let mut b = a.clone();
        b.setup[0].state.clear();
        let d = check_agreement("w", &a, Mode::Jit, &b).expect("differs");
        assert!(d.to_string().contains("setup tx 0: state:"), "{d}");
    }
}
