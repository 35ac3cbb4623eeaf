//! Benchmark workloads: one transaction to time, on a known state, read from state-test-shaped
//! files with the same loader `kiln statetest` uses.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use alloy_primitives::B256;
use eyre::{bail, eyre, WrapErr};
use revm::{
    context::{BlockEnv, CfgEnv, TxEnv},
    database::CacheState,
};
use revm_statetest_types::{Test, TestUnit, TxPartIndices};

use crate::statetest::{
    collect_files,
    load::{load_file, LoadedUnit, SequenceTx, Unit},
    runner::{build_tx, environment, spec_id, Fork},
};

/// Environment variable that overrides the benchmark root.
pub const BENCH_DIR_ENV: &str = "KILN_BENCH_DIR";

/// Root of the benchmark workloads (the folder holding `evm-benchmarks/` and `contracts/`).
///
/// `KILN_BENCH_DIR` wins when set and non-empty; otherwise `../shared/bench` next to the
/// workspace root, anchored at the source location (like the fixtures) so that `cargo bench`,
/// `cargo test` and the binary agree wherever they are started from.
pub fn bench_dir() -> PathBuf {
    match std::env::var_os(BENCH_DIR_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => {
            let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/bench");
            dir.canonicalize().unwrap_or(dir)
        }
    }
}

/// One timed transaction and everything needed to run it.
#[derive(Debug)]
pub struct Workload {
    /// `group/test[/input]`, e.g. `main/snailtracer/benchmark` or `contracts/weth`.
    pub name: String,
    /// Folder the file is in (`main`, `micro`, `contracts`): the unit of the geometric means.
    pub group: String,
    /// The file it came from.
    pub file: PathBuf,
    /// Fork it runs under.
    pub fork: Fork,
    /// Configuration (spec, chain id, limits).
    pub cfg: CfgEnv,
    /// Block environment.
    pub block: BlockEnv,
    /// State before `setup`; shared by the workloads of one test (one per input).
    pub pre: Arc<CacheState>,
    /// Transactions committed before `tx`, untimed (the earlier transactions of a sequence).
    pub setup: Vec<TxEnv>,
    /// The timed transaction.
    pub tx: TxEnv,
}

/// Which workloads to load.
#[derive(Clone, Debug)]
pub struct Selection {
    /// Substring the workload name or file path must contain.
    pub filter: Option<String>,
    /// Fork for tests that name none (no `post`).
    pub default_fork: Fork,
}

/// Loads every workload of `paths` (files, or folders searched recursively for `*.json`).
///
/// Unlike `kiln statetest`, a file or test that cannot be parsed is an error: a benchmark run
/// that silently drops a workload would report a geometric mean over a different set.
pub fn load_workloads(paths: &[PathBuf], selection: &Selection) -> eyre::Result<Vec<Workload>> {
    let files = collect_files(paths)?;
    let mut workloads = Vec::new();
    for file in &files {
        workloads.extend(
            load_workloads_of_file(file, selection)
                .wrap_err_with(|| format!("workload file {}", file.display()))?,
        );
    }
    Ok(workloads)
}

fn load_workloads_of_file(file: &Path, selection: &Selection) -> eyre::Result<Vec<Workload>> {
    let units = load_file(file).map_err(|e| eyre!(e))?;
    let group = file
        .parent()
        .and_then(Path::file_name)
        .map_or_else(|| "bench".to_owned(), |n| n.to_string_lossy().into_owned());
    let file_text = file.display().to_string();
    let mut out = Vec::new();
    for LoadedUnit { name, unit } in units {
        let unit = unit.map_err(|e| eyre!("test `{name}`: {e}"))?;
        let base = format!("{group}/{name}");
        let found = match unit {
            Unit::Standard(unit) => standard_workloads(&base, unit, selection),
            Unit::Sequence { unit, txs } => sequence_workload(&base, unit, &txs, selection),
        }
        .wrap_err_with(|| format!("test `{name}`"))?;
        out.extend(found.into_iter().map(|parts| Workload {
            group: group.clone(),
            file: file.to_path_buf(),
            ..parts
        }));
    }
    out.retain(|w| {
        selection
            .filter
            .as_deref()
            .is_none_or(|f| w.name.contains(f) || file_text.contains(f))
    });
    Ok(out)
}

/// A standard unit: one workload per post entry of its newest runnable fork (the inputs the
/// fixture was filled for), or per data × gas × value combination under the default fork when
/// it has no `post`.
fn standard_workloads(
    base: &str,
    unit: TestUnit,
    selection: &Selection,
) -> eyre::Result<Vec<Workload>> {
    let posted = unit
        .post
        .iter()
        .rev()
        .find_map(|(name, tests)| spec_id(name).ok().map(|spec| (name, spec, tests)));
    // (data, gas, value) indexes; `TxPartIndices` is not `Clone`.
    let (fork, indexes): (Fork, Vec<(usize, usize, usize)>) = match posted {
        Some((name, spec, tests)) => (
            Fork {
                label: format!("{name:?}"),
                spec,
            },
            tests
                .iter()
                // An entry expecting an exception is a transaction that never executes.
                .filter(|t| t.expect_exception.is_none())
                .map(|t| (t.indexes.data, t.indexes.gas, t.indexes.value))
                .collect(),
        ),
        None if !unit.post.is_empty() => bail!("no fork of its `post` is supported by revm"),
        None => {
            let parts = &unit.transaction;
            let mut all = Vec::new();
            for data in 0..parts.data.len() {
                for gas in 0..parts.gas_limit.len() {
                    for value in 0..parts.value.len() {
                        all.push((data, gas, value));
                    }
                }
            }
            (selection.default_fork.clone(), all)
        }
    };
    let (cfg, block) = environment(&unit, fork.spec);
    let pre = Arc::new(unit.state());
    let parts = &unit.transaction;
    indexes
        .into_iter()
        .map(|(data, gas, value)| {
            let mut name = format!("{base}/{}", input_label(&unit, data));
            // Only when the test varies them, so the usual names stay short.
            if parts.gas_limit.len() > 1 {
                name.push_str(&format!("/gas{gas}"));
            }
            if parts.value.len() > 1 {
                name.push_str(&format!("/value{value}"));
            }
            let indexes = TxPartIndices { data, gas, value };
            let tx = build_tx(&unit, &synthesize_test(&indexes)?)
                .map_err(|e| eyre!("input {name}: cannot build transaction: {e}"))?;
            Ok(Workload {
                name,
                group: String::new(),
                file: PathBuf::new(),
                fork: fork.clone(),
                cfg: cfg.clone(),
                block: block.clone(),
                pre: pre.clone(),
                setup: Vec::new(),
                tx,
            })
        })
        .collect()
}

/// `_info.labels[data]` (what evm-benchmarks call each input), else the data index.
fn input_label(unit: &TestUnit, data: usize) -> String {
    unit.info
        .as_ref()
        .and_then(|info| info.get("labels"))
        .and_then(|labels| labels.get(data.to_string()))
        .and_then(|label| label.as_str())
        .map_or_else(|| data.to_string(), str::to_owned)
}

/// `Test` has a private field, so the only way to reuse its `tx_env` is through serde.
fn synthesize_test(indexes: &TxPartIndices) -> eyre::Result<Test> {
    serde_json::from_value(serde_json::json!({
        "indexes": indexes,
        "hash": B256::ZERO,
        "logs": B256::ZERO,
    }))
    .wrap_err("internal: cannot synthesize a post entry")
}

/// A sequence: the last transaction is timed, the ones before it are committed first as setup.
///
/// Timing the last transaction on the state the others leave, rather than the whole sequence,
/// is what a node pays per transaction: the earlier ones (deployments, approvals) are separate
/// transactions of earlier blocks, each paid once, while the timed call is the one repeated.
fn sequence_workload(
    base: &str,
    unit: TestUnit,
    txs: &[SequenceTx],
    selection: &Selection,
) -> eyre::Result<Vec<Workload>> {
    let mut txs = txs
        .iter()
        .enumerate()
        .map(|(i, tx)| tx.tx_env().map_err(|e| eyre!("transaction {i}: {e}")))
        .collect::<eyre::Result<Vec<_>>>()?;
    let Some(tx) = txs.pop() else {
        bail!("`transaction` is an empty list");
    };
    let fork = selection.default_fork.clone();
    let (cfg, block) = environment(&unit, fork.spec);
    Ok(vec![Workload {
        name: base.to_owned(),
        group: String::new(),
        file: PathBuf::new(),
        fork,
        cfg,
        block,
        pre: Arc::new(unit.state()),
        setup: txs,
        tx,
    }])
}
