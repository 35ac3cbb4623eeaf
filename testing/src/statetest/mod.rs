//! `kiln statetest`: run Ethereum state tests through a chosen execution mode.

pub(crate) mod backend;
pub(crate) mod load;
mod panics;
pub(crate) mod report;
pub(crate) mod runner;
mod skips;

pub use report::{CaseReport, Outcome};
pub use runner::Fork;

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Instant,
};

use eyre::{bail, WrapErr};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

use crate::Mode;
use backend::Backend;
use report::Summary;
use runner::RunOptions;

/// Arguments of `kiln statetest`.
#[derive(Debug, clap::Args)]
pub struct StatetestArgs {
    /// State-test JSON files, or folders searched recursively for `*.json`.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,

    /// How transactions are executed: interpreter (stock revm), jit, tiered (as `jit --tiered`)
    /// or aot.
    #[arg(long, value_enum, default_value_t = Mode::Interpreter)]
    mode: Mode,

    /// Only run cases whose file path or test name contains this substring.
    #[arg(long, value_name = "SUBSTR")]
    filter: Option<String>,

    /// Also print one JSON object per case per line on stdout; failure details and the skip
    /// breakdown then go to stderr so stdout holds only JSON lines and the summary line.
    #[arg(long)]
    json: bool,

    /// Keep running after failures. This is always the behaviour; the flag is accepted for
    /// compatibility with `revme statetest`.
    #[arg(long)]
    keep_going: bool,

    /// Fork for tests without an expected `post` section (benchmark inputs), which name no
    /// fork themselves. Cancun is what the ethereum/tests fixtures here are filled for, and it
    /// has no EIP-7825 cap on the benchmarks' huge gas limits.
    #[arg(long, value_name = "FORK", default_value = "Cancun")]
    default_fork: String,

    /// Optimisation level for compiled modes (0-3, or `baseline`).
    #[arg(long, value_name = "N", default_value = "2")]
    opt_level: kiln_compiler::OptLevel,

    /// JIT through the tiered runtime (`--mode tiered`; `CompilePolicy::Tiered`, as
    /// `KilnEvmFactory::default()`): each code at the baseline tier first, promoted to
    /// `--opt-level` on a background thread once 8 cases have looked it up, so later cases run
    /// either tier. Only changes `--mode jit` (AOT compiles each code once; reports still say
    /// `jit`).
    #[arg(long)]
    tiered: bool,

    /// Directory for AOT artifacts (default: a temporary directory removed at exit).
    #[arg(long, value_name = "DIR")]
    aot_dir: Option<PathBuf>,

    /// Also run fixtures skipped by default for being slow (they pass, but spend their time
    /// inside a precompile, which no mode compiles).
    #[arg(long)]
    include_slow: bool,
}

/// The modes `kiln statetest` runs.
const MODES: [Mode; 4] = [Mode::Interpreter, Mode::Jit, Mode::Tiered, Mode::Aot];

/// Runs the command; the exit code is non-zero when any case failed.
pub fn run(args: StatetestArgs) -> eyre::Result<ExitCode> {
    let StatetestArgs {
        paths,
        mode,
        filter,
        json,
        keep_going: _,
        default_fork,
        include_slow,
        opt_level,
        tiered,
        aot_dir,
    } = args;
    // Argument errors first, before any file system work.
    mode.ensure_one_of("statetest", &MODES)?;
    let default_fork = Fork::parse(&default_fork).wrap_err("invalid --default-fork")?;
    let files = collect_files(&paths)?;
    if files.is_empty() {
        bail!("no *.json files found in {}", display_paths(&paths));
    }
    // The reference runs on stock revm, as `revme statetest` does; `--tiered` makes JIT tiered.
    let runtime = match mode {
        Mode::Interpreter => None,
        Mode::Jit if tiered => Mode::Tiered.runtime_config(options(opt_level), None),
        _ => mode.runtime_config(options(opt_level), aot_dir.clone()),
    };
    let backend = Backend::new(runtime.as_ref()).wrap_err_with(|| match &aot_dir {
        Some(dir) if mode == Mode::Aot => format!("AOT directory {}", dir.display()),
        _ => format!("cannot set up mode {mode}"),
    })?;
    let opts = RunOptions {
        backend,
        mode,
        filter,
        default_fork,
        include_slow,
    };
    let result = run_files(&files, &opts, json);
    // No background compilation may outlive the command.
    if let Some(rt) = opts.backend.runtime() {
        rt.shutdown();
    }
    result
}

/// Runs every case of one state-test file in `mode`, compiling with `options` in the compiled
/// modes, and returns the reports `kiln statetest` would print (for callers that check them, such
/// as tests of reproducers).
pub fn run_file(
    path: &Path,
    mode: Mode,
    options: kiln_compiler::CompileOptions,
) -> eyre::Result<Vec<CaseReport>> {
    mode.ensure_one_of("statetest", &MODES)?;
    let runtime = match mode {
        Mode::Interpreter => None,
        _ => mode.runtime_config(options, None),
    };
    let opts = RunOptions {
        backend: Backend::new(runtime.as_ref())?,
        mode,
        filter: None,
        default_fork: Fork::parse("Cancun")?,
        include_slow: true,
    };
    let reports = runner::run_file(path, &opts);
    if let Some(rt) = opts.backend.runtime() {
        rt.shutdown();
    }
    Ok(reports)
}

/// The compile options of the compiled modes.
fn options(opt_level: kiln_compiler::OptLevel) -> kiln_compiler::CompileOptions {
    kiln_compiler::CompileOptions {
        opt_level,
        ..Default::default()
    }
}

/// Runs every case of `files` and prints the reports and the summary line.
fn run_files(files: &[PathBuf], opts: &RunOptions, json: bool) -> eyre::Result<ExitCode> {
    let mode = opts.mode;
    panics::install_hook();

    let progress = progress_bar(files.len());
    let started = Instant::now();
    let reports: Vec<Vec<CaseReport>> = files
        .par_iter()
        // One file per task: a few files run for seconds, so coarse chunks would leave a core idle.
        .with_max_len(1)
        .map(|file| {
            let reports = runner::run_file(file, opts);
            progress.inc(1);
            reports
        })
        .collect();
    progress.finish_and_clear();
    let elapsed = started.elapsed();

    let mut summary = Summary::default();
    let stdout = std::io::stdout();
    let mut stdout = stdout.lock();
    let mut human: Box<dyn Write> = if json {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    for report in reports.iter().flatten() {
        summary.add(report);
        if json {
            writeln!(stdout, "{}", report.to_json_line())?;
        }
    }
    stdout.flush()?;
    for report in reports
        .iter()
        .flatten()
        .filter(|r| r.outcome == Outcome::Failed)
    {
        report.write_failure(&mut human)?;
    }
    for (category, count) in &summary.skip_reasons {
        writeln!(human, "skipped {count}: {category}")?;
    }
    human.flush()?;
    drop(human);
    tracing::info!(
        files = files.len(),
        mode = mode.as_str(),
        "finished in {:.2?}",
        elapsed
    );
    if let Some(rt) = opts.backend.runtime() {
        use std::sync::atomic::Ordering::Relaxed;
        let s = &rt.stats;
        tracing::info!(
            compiled = s.compilations.load(Relaxed),
            compile_failures = s.compile_failures.load(Relaxed),
            compile_secs = s.compile_micros.load(Relaxed) as f64 / 1e6,
            compiled_frames = s.compiled_frames.load(Relaxed),
            interpreted_frames = s.interpreted_frames.load(Relaxed),
            handoffs = s.handoffs.load(Relaxed),
            promotions = s.promotions.load(Relaxed),
            "compiled-code runtime"
        );
    }

    writeln!(
        stdout,
        "{} passed, {} failed, {} skipped",
        summary.passed, summary.failed, summary.skipped
    )?;
    stdout.flush()?;
    Ok(if summary.failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Explicit files are taken as given; folders contribute their `*.json` files, sorted so runs
/// are reproducible.
pub(crate) fn collect_files(paths: &[PathBuf]) -> eyre::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path)
            .wrap_err_with(|| format!("cannot access {}", path.display()))?;
        if meta.is_dir() {
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

fn walk_json(dir: &Path, out: &mut Vec<PathBuf>) -> eyre::Result<()> {
    let entries =
        std::fs::read_dir(dir).wrap_err_with(|| format!("cannot read folder {}", dir.display()))?;
    for entry in entries {
        let path = entry
            .wrap_err_with(|| format!("cannot read folder {}", dir.display()))?
            .path();
        if path.is_dir() {
            walk_json(&path, out)?;
        } else if path.extension().is_some_and(|ext| ext == "json") {
            out.push(path);
        }
    }
    Ok(())
}

fn display_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Progress on stderr; indicatif draws nothing when stderr is not a terminal.
fn progress_bar(files: usize) -> ProgressBar {
    let bar = ProgressBar::new(files as u64);
    if let Ok(style) =
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} files ({eta} left)")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}
