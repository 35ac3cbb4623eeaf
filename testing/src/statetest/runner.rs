//! Expanding tests into cases, running them and judging the results.

use std::path::Path;

use alloy_primitives::{Bytes, Log, B256};
use revm::{
    context::{BlockEnv, CfgEnv, TxEnv},
    database::{CacheState, State},
    primitives::hardfork::SpecId,
};
use revm_statetest_types::{SpecName, Test, TestUnit, TxPartIndices};

use super::{
    backend::{is_validation_error, transact, Backend, TxError},
    load::{load_file, LoadedUnit, SequenceTx, Unit},
    panics,
    report::{CaseReport, Outcome},
    skips::{known_skip, Skip},
};
use crate::Mode;
use kiln_evm::roots;

/// A fork to run under: its label in reports and its revm spec.
#[derive(Clone, Debug)]
pub struct Fork {
    /// Name as written in fixtures, e.g. `Cancun`.
    pub label: String,
    /// The revm spec it maps to.
    pub spec: SpecId,
}

impl Fork {
    /// Parses a fixture fork name such as `Cancun` or `Prague`.
    pub fn parse(name: &str) -> eyre::Result<Self> {
        let spec_name: SpecName = serde_json::from_value(serde_json::Value::String(name.into()))?;
        let spec =
            spec_id(&spec_name).map_err(|(_, reason)| eyre::eyre!("fork `{name}`: {reason}"))?;
        Ok(Self {
            label: name.to_owned(),
            spec,
        })
    }
}

/// Everything a worker needs, shared by reference across threads.
#[derive(Debug)]
pub struct RunOptions {
    /// Executes transactions.
    pub backend: Backend,
    /// Reported in JSON lines.
    pub mode: Mode,
    /// Substring a case's file path or test name must contain.
    pub filter: Option<String>,
    /// Fork for tests that have no `post` to name one.
    pub default_fork: Fork,
    /// Run files that are skipped only for being slow.
    pub include_slow: bool,
}

/// Runs every case of one file. Never panics: a panic escaping the per-case guard (e.g. while
/// expanding cases) turns into one failed report for the file.
pub fn run_file(path: &Path, opts: &RunOptions) -> Vec<CaseReport> {
    let file = path.display().to_string();
    panics::catch(|| run_file_inner(path, &file, opts)).unwrap_or_else(|panic| {
        vec![CaseReport::new(&file, None, None, None, opts.mode).failed(format!("panic: {panic}"))]
    })
}

fn run_file_inner(path: &Path, file: &str, opts: &RunOptions) -> Vec<CaseReport> {
    let units = match load_file(path) {
        Ok(units) => units,
        Err(err) => return vec![CaseReport::new(file, None, None, None, opts.mode).failed(err)],
    };
    let file_matches = opts.filter.as_deref().is_none_or(|f| file.contains(f));
    let skip = path
        .file_name()
        .and_then(|n| known_skip(&n.to_string_lossy(), opts.include_slow));
    let mut reports = Vec::new();
    for LoadedUnit { name, unit } in units {
        if !file_matches && !opts.filter.as_deref().is_some_and(|f| name.contains(f)) {
            continue;
        }
        let ctx = UnitCtx {
            file,
            name: &name,
            opts,
        };
        if let Some(skip) = skip {
            skip_unit(&ctx, unit.as_ref().ok(), skip, &mut reports);
            continue;
        }
        match unit {
            Err(err) => reports.push(ctx.report(None, None).failed(err)),
            Ok(Unit::Standard(unit)) if unit.post.is_empty() => {
                run_unexpected(&ctx, &unit, &mut reports)
            }
            Ok(Unit::Standard(unit)) => run_posted(&ctx, &unit, &mut reports),
            Ok(Unit::Sequence { unit, txs }) => run_sequence(&ctx, &unit, &txs, &mut reports),
        }
    }
    reports
}

struct UnitCtx<'a> {
    file: &'a str,
    name: &'a str,
    opts: &'a RunOptions,
}

impl UnitCtx<'_> {
    fn report(&self, fork: Option<&str>, index: Option<usize>) -> CaseReport {
        CaseReport::new(self.file, Some(self.name), fork, index, self.opts.mode)
    }
}

/// One skipped report per case the unit would have run (one for the unit if it didn't parse).
fn skip_unit(ctx: &UnitCtx<'_>, unit: Option<&Unit>, skip: Skip, reports: &mut Vec<CaseReport>) {
    let cases: Vec<(String, usize)> = match unit {
        Some(Unit::Standard(unit)) if !unit.post.is_empty() => unit
            .post
            .iter()
            .flat_map(|(fork, tests)| (0..tests.len()).map(move |i| (format!("{fork:?}"), i)))
            .collect(),
        _ => vec![(ctx.opts.default_fork.label.clone(), 0)],
    };
    for (fork, index) in cases {
        reports.push(
            ctx.report(Some(&fork), Some(index))
                .skipped(skip.category, skip.reason),
        );
    }
}

/// What the fixture says the case must produce.
struct Expected {
    state_root: B256,
    logs_hash: B256,
    exception: Option<String>,
    output: Option<Bytes>,
}

/// The common case: every post entry of every fork is one case.
fn run_posted(ctx: &UnitCtx<'_>, unit: &TestUnit, reports: &mut Vec<CaseReport>) {
    let pre = unit.state();
    for (spec_name, tests) in &unit.post {
        let label = format!("{spec_name:?}");
        let spec = match spec_id(spec_name) {
            Ok(spec) => spec,
            Err((category, reason)) => {
                for index in 0..tests.len() {
                    reports.push(
                        ctx.report(Some(&label), Some(index))
                            .skipped(category, reason.clone()),
                    );
                }
                continue;
            }
        };
        let (cfg, block) = environment(unit, spec);
        for (index, test) in tests.iter().enumerate() {
            let report = ctx.report(Some(&label), Some(index));
            let tx = match build_tx(unit, test) {
                Ok(tx) => tx,
                Err(err) => {
                    // Mirrors revme: a transaction the fixture expects to be rejected may be
                    // unbuildable (no key, bad type); anything else is a broken case.
                    reports.push(match &test.expect_exception {
                        Some(exc) => report.skipped(
                            "transaction not buildable, exception expected",
                            format!("{err} (expected exception: {exc})"),
                        ),
                        None => report.failed(format!("cannot build transaction: {err}")),
                    });
                    continue;
                }
            };
            let expected = Expected {
                state_root: test.hash,
                logs_hash: test.logs,
                exception: test.expect_exception.clone(),
                output: unit.out.clone(),
            };
            reports.push(execute(
                report,
                ctx.opts,
                &pre,
                &cfg,
                &block,
                vec![tx],
                Some(expected),
            ));
        }
    }
}

/// A state test without `post` (benchmark input): run every data × gas × value combination
/// under the default fork and report what was computed.
fn run_unexpected(ctx: &UnitCtx<'_>, unit: &TestUnit, reports: &mut Vec<CaseReport>) {
    let pre = unit.state();
    let fork = &ctx.opts.default_fork;
    let (cfg, block) = environment(unit, fork.spec);
    let parts = &unit.transaction;
    let combos = (0..parts.data.len()).flat_map(|data| {
        (0..parts.gas_limit.len()).flat_map(move |gas| {
            (0..parts.value.len()).map(move |value| TxPartIndices { data, gas, value })
        })
    });
    for (index, indexes) in combos.enumerate() {
        let report = ctx.report(Some(&fork.label), Some(index));
        // `Test` has a private field, so the only way to reuse its `tx_env` is through serde.
        let test: Test = match serde_json::from_value(serde_json::json!({
            "indexes": indexes,
            "hash": B256::ZERO,
            "logs": B256::ZERO,
        })) {
            Ok(test) => test,
            Err(err) => {
                reports
                    .push(report.failed(format!("internal: cannot synthesize post entry: {err}")));
                continue;
            }
        };
        match build_tx(unit, &test) {
            Ok(tx) => reports.push(execute(
                report,
                ctx.opts,
                &pre,
                &cfg,
                &block,
                vec![tx],
                None,
            )),
            Err(err) => reports.push(report.failed(format!("cannot build transaction: {err}"))),
        }
    }
}

/// Transactions executed in order on one state, under the default fork; one case.
fn run_sequence(
    ctx: &UnitCtx<'_>,
    unit: &TestUnit,
    txs: &[SequenceTx],
    reports: &mut Vec<CaseReport>,
) {
    let fork = &ctx.opts.default_fork;
    let report = ctx.report(Some(&fork.label), Some(0));
    let txs = match txs
        .iter()
        .enumerate()
        .map(|(i, tx)| tx.tx_env().map_err(|e| format!("transaction {i}: {e}")))
        .collect()
    {
        Ok(txs) => txs,
        Err(err) => {
            reports.push(report.failed(format!("cannot build transaction: {err}")));
            return;
        }
    };
    let (cfg, block) = environment(unit, fork.spec);
    reports.push(execute(
        report,
        ctx.opts,
        &unit.state(),
        &cfg,
        &block,
        txs,
        None,
    ));
}

/// Maps a fixture fork to a revm spec, or gives a skip `(category, reason)`.
pub(crate) fn spec_id(name: &SpecName) -> Result<SpecId, (&'static str, String)> {
    match name {
        // The original Constantinople (with EIP-1283) never shipped and revm does not model
        // it; `SpecName::to_spec_id` panics on it and revme skips it.
        SpecName::Constantinople | SpecName::ByzantiumToConstantinopleAt5 => Err((
            "fork Constantinople (EIP-1283) not supported by revm",
            format!("fork {name:?} is not supported by revm (superseded by ConstantinopleFix)"),
        )),
        SpecName::Unknown => Err(("unknown fork", "unknown fork name".to_owned())),
        _ => Ok(name.to_spec_id()),
    }
}

/// Configuration and block for `spec`, mirroring how revme sets them up.
pub(crate) fn environment(unit: &TestUnit, spec: SpecId) -> (CfgEnv, BlockEnv) {
    let mut cfg = CfgEnv::default();
    // Gas parameters are spec dependent; setting the spec alone would keep the default's.
    cfg.set_spec_and_mainnet_gas_params(spec);
    cfg.chain_id = unit
        .env
        .current_chain_id
        .map_or(1, |id| id.try_into().unwrap_or(1));
    // EIP-4844 allows 6 blobs per transaction, Prague's EIP-7691 raises it to 9, and Osaka's
    // EIP-7594 caps a single transaction at 6 again. Without a value revm skips the check.
    // The tx gas limit cap (EIP-7825) needs nothing: revm derives it from the spec.
    cfg.set_max_blobs_per_tx(
        if spec.is_enabled_in(SpecId::PRAGUE) && !spec.is_enabled_in(SpecId::OSAKA) {
            9
        } else {
            6
        },
    );
    let block = unit.block_env(&mut cfg);
    (cfg, block)
}

/// `Test::tx_env`, after checking the indexes it would otherwise panic on.
pub(crate) fn build_tx(unit: &TestUnit, test: &Test) -> Result<TxEnv, String> {
    let parts = &unit.transaction;
    let idx = &test.indexes;
    for (what, index, len) in [
        ("data", idx.data, parts.data.len()),
        ("gas", idx.gas, parts.gas_limit.len()),
        ("value", idx.value, parts.value.len()),
    ] {
        if index >= len {
            return Err(format!(
                "{what} index {index} out of range (transaction has {len})"
            ));
        }
    }
    test.tx_env(unit).map_err(|e| e.to_string())
}

/// What running a case produced.
struct Executed {
    state_root: B256,
    logs_hash: B256,
    gas_used: Option<u64>,
    output: Option<Bytes>,
    error: Option<TxError>,
}

/// Runs `txs` in order on a fresh copy of `pre` and judges the result against `expected`.
fn execute(
    mut report: CaseReport,
    opts: &RunOptions,
    pre: &CacheState,
    cfg: &CfgEnv,
    block: &BlockEnv,
    txs: Vec<TxEnv>,
    expected: Option<Expected>,
) -> CaseReport {
    let run = panics::catch(|| {
        let mut state = State::builder()
            .with_cached_prestate(pre.clone())
            .with_bundle_update()
            .build();
        let mut logs: Vec<Log> = Vec::new();
        let mut gas_used = None;
        let mut output = None;
        let mut error = None;
        for tx in txs {
            match transact(&opts.backend, &mut state, cfg, block, tx) {
                Ok(result) => {
                    gas_used = Some(gas_used.unwrap_or(0) + result.tx_gas_used());
                    output = Some(result.output().cloned().unwrap_or_default());
                    logs.extend(result.into_logs());
                }
                Err(err) => {
                    error = Some(err);
                    break;
                }
            }
        }
        Executed {
            state_root: roots::state_root(&state.cache),
            logs_hash: roots::logs_hash(&logs),
            gas_used,
            output,
            error,
        }
    });
    let executed = match run {
        Ok(executed) => executed,
        Err(panic) => return report.failed(format!("panic: {panic}")),
    };

    report.state_root = Some(executed.state_root);
    report.logs_hash = Some(executed.logs_hash);
    report.gas_used = executed.gas_used;
    report.output = executed.output;
    report.expected = expected.as_ref().map(|e| (e.state_root, e.logs_hash));
    report.outcome = Outcome::Passed;

    let Some(expected) = expected else {
        return match executed.error {
            Some(err) => report.failed(format!("transaction failed: {err}")),
            None => {
                report.outcome = Outcome::Unverified;
                report
            }
        };
    };

    let mut problems = Vec::new();
    match (&expected.exception, &executed.error) {
        (None, None) => {
            if let (Some(want), Some(got)) = (&expected.output, &report.output) {
                if want != got {
                    problems.push(format!("output mismatch: expected {want}, got {got}"));
                }
            }
        }
        // Rejected as the fixture demands. Nothing was committed, and the fixture's hash is
        // the pre-state root, so the root comparison below still applies.
        (Some(_), Some(err)) if is_validation_error(err) => {}
        (Some(exc), None) => problems.push(format!(
            "expected exception {exc}, but the transaction was valid"
        )),
        (Some(exc), Some(err)) => problems.push(format!(
            "expected exception {exc}, got executor error: {err}"
        )),
        (None, Some(err)) if is_validation_error(err) => {
            problems.push(format!("unexpected invalid transaction: {err}"))
        }
        (None, Some(err)) => problems.push(format!("executor error: {err}")),
    }
    if executed.logs_hash != expected.logs_hash {
        problems.push("logs hash mismatch".to_owned());
    }
    if executed.state_root != expected.state_root {
        problems.push("state root mismatch".to_owned());
    }
    if problems.is_empty() {
        report
    } else {
        report.failed(problems.join("; "))
    }
}
