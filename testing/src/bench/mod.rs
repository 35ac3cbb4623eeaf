//! `kiln bench`: time whole transactions through the EVM in each execution mode, the way a node
//! pays for them, after checking that every mode computes exactly what the interpreter does.
//!
//! Per workload (one transaction on a known state) and mode:
//! 1. build the EVM once over the pre-state and commit any setup transactions;
//! 2. compile the contracts in the state with the mode's backend (timed: compile ms, the median
//!    of three JIT compilations), and emit their object files (object size);
//! 3. run the transaction once without committing and compare gas, status, output, logs and
//!    state changes with the interpreter's; a mode that differs is not timed and fails the run;
//! 4. warm up, then time repetitions of the same non-committing `transact` (the state never
//!    changes, so every repetition does the same work), the modes taking turns in rounds.
//!
//! The criterion benches (`benches/workloads.rs`) reuse [`workload`] and [`exec`] through
//! [`prepare_checked`].

pub mod exec;
pub mod measure;
pub mod report;
pub mod workload;

use std::{
    io::Write,
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

use eyre::{bail, WrapErr};
use indicatif::{ProgressBar, ProgressStyle};
use kiln_compiler::{CompileOptions, OptLevel};

use crate::{statetest::Fork, Mode};
use exec::{check_agreement, Compiler, Contender, Disagreement, Observed};
use measure::{measure, Budget};
use report::{Machine, Row, Summary, Table, KECCAK_CACHE};
use workload::{bench_dir, load_workloads, Selection, Workload};

/// Arguments of `kiln bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Workload files (state-test-shaped JSON), or folders searched recursively for `*.json`.
    /// Default: the benchmark set in `KILN_BENCH_DIR`, else `../shared/bench` beside the
    /// workspace.
    #[arg(value_name = "PATH")]
    paths: Vec<PathBuf>,

    /// Modes to time, comma-separated (all but `jit-partial` and `jit-family`). The interpreter (kiln's EVM with
    /// nothing compiled) is always run: it is the reference for the agreement check and the
    /// speedups. `revm` is stock revm, for the cost of kiln's dispatch.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "revm,interpreter,jit"
    )]
    modes: Vec<Mode>,

    /// Print one JSON object per (workload, mode) on stdout instead of the table; the machine
    /// and the summary then go to stderr.
    #[arg(long)]
    json: bool,

    /// Only run workloads whose name or file path contains this substring.
    #[arg(long, value_name = "SUBSTR")]
    filter: Option<String>,

    /// Minimum timed repetitions per workload and mode.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    reps: u64,

    /// Minimum timed seconds per workload and mode (repetitions are added until both this and
    /// `--reps` are reached).
    #[arg(long, value_name = "SECS", default_value_t = 0.3)]
    min_time: f64,

    /// Optimisation level for compiled modes (0-3, or `baseline`); `jit-baseline` always
    /// compiles at `baseline`.
    #[arg(long, value_name = "N", default_value = "2")]
    opt_level: OptLevel,

    /// Fork for workloads that name none (no `post`, e.g. `contracts/`). Workloads with a
    /// `post` run under its newest fork, as filled.
    #[arg(long, value_name = "FORK", default_value = "Cancun")]
    default_fork: String,

    /// Compile every contract, also loop-free code too small for compiled code to beat the
    /// interpreter (by default that code is left to the interpreter, as a node would).
    #[arg(long)]
    compile_all: bool,

    /// Compile with a deliberate miscompilation (`gas:<opcode hex>:<delta>` or `flip-lt`), to
    /// prove that the agreement check fails the run. Tests only.
    #[arg(long, value_name = "FAULT", hide = true)]
    inject_fault: Option<kiln_compiler::Fault>,
}

/// The modes `kiln bench` runs.
pub const MODES: [Mode; 7] = [
    Mode::Revm,
    Mode::Interpreter,
    Mode::Jit,
    Mode::JitProfiled,
    Mode::JitBaseline,
    Mode::Aot,
    Mode::Tiered,
];

/// Runs the command. The exit code is non-zero when a mode disagreed with the interpreter or a
/// workload could not run.
pub fn run(args: BenchArgs) -> eyre::Result<ExitCode> {
    let started = Instant::now();
    let BenchArgs {
        paths,
        modes,
        json,
        filter,
        reps,
        min_time,
        opt_level,
        default_fork,
        compile_all,
        inject_fault,
    } = args;
    if !(min_time.is_finite() && min_time >= 0.0) {
        bail!("--min-time must be a non-negative number of seconds, got {min_time}");
    }
    for mode in &modes {
        mode.ensure_one_of("bench", &MODES)?;
    }
    let default_fork = Fork::parse(&default_fork).wrap_err("invalid --default-fork")?;
    let modes = with_reference(modes);
    let budget = Budget {
        min_reps: reps,
        min_time: Duration::from_secs_f64(min_time),
    };
    let paths = if paths.is_empty() {
        vec![bench_dir()]
    } else {
        paths
    };
    let workloads = load_workloads(
        &paths,
        &Selection {
            filter,
            default_fork: default_fork.clone(),
        },
    )?;
    if workloads.is_empty() {
        bail!(
            "no workloads found in {}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    let machine = Machine::detect();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    // Human-readable text goes to stdout for the table and to stderr with --json, so that
    // stdout then holds JSON lines only.
    let mut human: Box<dyn Write> = if json {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    writeln!(human, "machine: {machine}")?;
    if KECCAK_CACHE {
        writeln!(
            human,
            "keccak256: keccak-asm with a process-wide result cache (feature `keccak-cache`, reth's \
             default). The cache outlives a repetition: a workload that hashes the same inputs in \
             every repetition finds them cached, as a node would not; build with \
             `--no-default-features` for figures without it"
        )?;
    } else {
        writeln!(human, "keccak256: keccak-asm, no result cache")?;
    }
    writeln!(
        human,
        "kiln bench: {} workloads, modes {}, opt-level {opt_level:?}, fork from `post` else {}; \
         at least {reps} reps and {min_time:.2} s per workload and mode; time per transaction",
        workloads.len(),
        modes
            .iter()
            .map(|m| m.as_str())
            .collect::<Vec<_>>()
            .join(","),
        default_fork.label,
    )?;
    let table = Table::new(workloads.iter().map(|w| w.name.as_str()));
    if !json {
        writeln!(human, "{}", table.header())?;
    }
    human.flush()?;

    let mut compiler = Compiler::new(CompileOptions {
        opt_level,
        skip_unprofitable: !compile_all,
        fault: inject_fault,
        ..Default::default()
    });
    let progress = progress_bar(workloads.len());
    let mut summary = Summary::new();
    let mut disagreements: Vec<Disagreement> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    let benched = (|| -> eyre::Result<()> {
        for workload in &workloads {
            progress.set_message(workload.name.clone());
            match bench_workload(workload, &modes, &mut compiler, budget) {
                Ok((rows, disagreed)) => {
                    for row in &rows {
                        summary.add(row);
                    }
                    progress.suspend(|| -> eyre::Result<()> {
                        for d in &disagreed {
                            eprintln!("DISAGREEMENT: {d}");
                        }
                        if json {
                            for row in &rows {
                                writeln!(out, "{}", row.to_json())?;
                            }
                            out.flush()?;
                        } else {
                            write!(human, "{}", table.block(&rows))?;
                            human.flush()?;
                        }
                        Ok(())
                    })?;
                    disagreements.extend(disagreed);
                }
                Err(err) => {
                    let message = format!("{}: {err:#}", workload.name);
                    progress.suspend(|| eprintln!("error: {message}"));
                    errors.push(message);
                }
            }
            progress.inc(1);
        }
        Ok(())
    })();
    // No background compilation may outlive the run, whichever way it ends.
    compiler.shutdown();
    benched?;
    progress.finish_and_clear();

    writeln!(human)?;
    write!(human, "{}", summary.render())?;
    writeln!(
        human,
        "wall time {:.1} s (including compilation and the agreement checks)",
        started.elapsed().as_secs_f64()
    )?;
    human.flush()?;
    drop(human);

    if disagreements.is_empty() && errors.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    // Repeated at the end, where a long run's reader looks.
    for d in &disagreements {
        eprintln!("error: {d}");
    }
    for e in &errors {
        eprintln!("error: {e}");
    }
    eprintln!(
        "error: {} disagreement(s) with the interpreter, {} workload(s) failed to run",
        disagreements.len(),
        errors.len()
    );
    Ok(ExitCode::FAILURE)
}

/// Sorted, without duplicates, and with the interpreter (the reference) present.
fn with_reference(mut modes: Vec<Mode>) -> Vec<Mode> {
    modes.push(Mode::Interpreter);
    modes.sort();
    modes.dedup();
    modes
}

/// Prepares every mode on `workload` and checks it against the interpreter. Returns the modes
/// that agree (interpreter first among them, in `modes` order) and the disagreements.
///
/// Fails when the interpreter itself cannot run the workload (a rejected transaction is not a
/// benchmark), or when `modes` lacks the interpreter.
pub fn prepare_checked(
    workload: &Workload,
    modes: &[Mode],
    compiler: &mut Compiler,
) -> eyre::Result<(Vec<Contender>, Vec<Disagreement>)> {
    let contenders = modes
        .iter()
        .map(|&mode| {
            Contender::prepare(workload, mode, compiler)
                .wrap_err_with(|| format!("preparing mode {mode}"))
        })
        .collect::<eyre::Result<Vec<_>>>()?;
    let Some(reference) = contenders.iter().find(|c| c.mode == Mode::Interpreter) else {
        bail!("the interpreter mode is required as the reference");
    };
    let reference = reference.observed.clone();
    for (i, tx) in reference.setup.iter().enumerate() {
        if let Err(err) = &tx.result {
            bail!("setup transaction {i} is rejected by the interpreter: {err}");
        }
    }
    if let Err(err) = &reference.timed.result {
        bail!("the transaction is rejected by the interpreter: {err}");
    }
    let mut agreeing = Vec::new();
    let mut disagreements = Vec::new();
    for contender in contenders {
        // `tiered` ran the timed transaction on both tiers: each must agree.
        let promoted = contender.promoted.clone().map(|timed| Observed {
            setup: contender.observed.setup.clone(),
            timed,
        });
        let disagreement = [Some(&contender.observed), promoted.as_ref()]
            .into_iter()
            .flatten()
            .find_map(|observed| {
                check_agreement(&workload.name, &reference, contender.mode, observed)
            });
        match disagreement {
            None => agreeing.push(contender),
            Some(d) => disagreements.push(d),
        }
    }
    Ok((agreeing, disagreements))
}

/// Prepares, checks and times one workload; returns a row per agreeing mode.
fn bench_workload(
    workload: &Workload,
    modes: &[Mode],
    compiler: &mut Compiler,
    budget: Budget,
) -> eyre::Result<(Vec<Row>, Vec<Disagreement>)> {
    let (mut contenders, disagreements) = prepare_checked(workload, modes, compiler)?;
    let tx = workload.tx.clone();
    let stats = {
        let mut evms: Vec<&mut exec::Evm> = contenders.iter_mut().map(|c| &mut c.evm).collect();
        measure(&mut evms, &tx, budget)?
    };
    let median_of = |mode: Mode| {
        contenders
            .iter()
            .zip(&stats)
            .find(|(c, _)| c.mode == mode)
            .map(|(_, s)| s.median_ns)
    };
    let interpreter = median_of(Mode::Interpreter);
    let revm = median_of(Mode::Revm);
    let rows = contenders
        .into_iter()
        .zip(stats)
        .map(|(c, stats)| {
            let timed = &c.observed.timed;
            Row {
                workload: workload.name.clone(),
                group: workload.group.clone(),
                file: workload.file.display().to_string(),
                fork: workload.fork.label.clone(),
                mode: c.mode,
                gas_used: timed.gas_used().unwrap_or_default(),
                status: timed.status(),
                speedup: interpreter.map(|i| i / stats.median_ns),
                time_vs_revm: revm.map(|r| stats.median_ns / r),
                compile: c.compile,
                frames: c.frames,
                stats,
            }
        })
        .collect();
    Ok((rows, disagreements))
}

/// Progress on stderr; indicatif draws nothing when stderr is not a terminal.
fn progress_bar(workloads: usize) -> ProgressBar {
    let bar = ProgressBar::new(workloads as u64);
    if let Ok(style) =
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} workloads {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}
