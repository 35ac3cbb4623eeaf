//! `kiln import`: Ethereum blockchain tests imported through kiln's EVM as a node imports blocks
//! (the `kiln-node` library does the work).

use clap::{Args, ValueEnum};
use eyre::{bail, WrapErr};
use indicatif::{ProgressBar, ProgressStyle};
use kiln_exex::{Policy, ServiceConfig};
use kiln_node::{ImportMode, ImportOptions, Outcome, Progress};
use std::{io::IsTerminal, path::PathBuf, process::ExitCode};

/// How blocks are executed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// revm's interpreter.
    Interpreter,
    /// Each code compiled the first time it runs.
    Jit,
    /// As a node: a lookup-only JIT runtime filled by the hot-code service.
    Tiered,
}

/// The service's policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum PolicyArg {
    /// kiln's: gas in canonical blocks, decayed, two tiers.
    Heat,
    /// reth's `--jit`: lookups from any execution, one tier.
    Lookups,
}

/// Arguments of `kiln import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Blockchain-test JSON files, or folders searched recursively for `*.json`.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,

    /// How blocks are executed.
    #[arg(long, value_enum, default_value_t = Mode::Interpreter)]
    mode: Mode,

    /// Only import tests whose file path or test name contains this substring.
    #[arg(long, value_name = "SUBSTR")]
    filter: Option<String>,

    /// How the service decides what to compile (tiered mode): kiln's canonical heat, or reth's
    /// `--jit` policy (compile once after N lookups from any execution) for comparison.
    #[arg(long = "jit.policy", value_enum, default_value_t = PolicyArg::Heat)]
    policy: PolicyArg,

    /// Under `--jit.policy lookups`, the lookups after which a code is compiled.
    #[arg(long = "jit.lookup-threshold", value_name = "N")]
    lookup_threshold: Option<u64>,

    /// Heat (decayed gas) at which the service compiles a code at the quick tier (tiered mode).
    #[arg(long = "jit.hot-threshold", value_name = "GAS")]
    hot_threshold: Option<u64>,

    /// Heat at which the service compiles a code at the optimising tier (tiered mode).
    #[arg(long = "jit.optimise-threshold", value_name = "GAS")]
    optimise_threshold: Option<u64>,

    /// The service's compile worker threads (tiered mode).
    #[arg(long = "jit.worker-count", value_name = "N")]
    worker_count: Option<usize>,

    /// Replays new compiled code must match the interpreter on before it serves (tiered mode).
    #[arg(long = "jit.verify-runs", value_name = "N")]
    verify_runs: Option<u32>,

    /// After each chain notification, wait until the service has compiled and verified what it
    /// queued, so its code serves the next block (tiered mode; repeatable runs, a node never
    /// waits).
    #[arg(long = "jit.settle")]
    settle: bool,

    /// Compile in helper processes (`kiln compile-helper`) instead of this one (tiered mode).
    #[arg(long = "jit.isolation", value_name = "BOOL", default_value_t = false, action = clap::ArgAction::Set)]
    isolation: bool,
}

impl ImportArgs {
    fn service_config(&self) -> ServiceConfig {
        let mut config = ServiceConfig {
            isolation: self.isolation,
            policy: match self.policy {
                PolicyArg::Heat => Policy::Heat,
                PolicyArg::Lookups => Policy::Lookups,
            },
            ..ServiceConfig::default()
        };
        if let Some(gas) = self.hot_threshold {
            config.hot_threshold_gas = gas;
        }
        if let Some(gas) = self.optimise_threshold {
            config.optimise_threshold_gas = gas;
        }
        if let Some(n) = self.lookup_threshold {
            config.lookup_threshold = n;
        }
        if let Some(n) = self.worker_count {
            config.worker_count = n;
        }
        if let Some(n) = self.verify_runs {
            config.verify_runs = n;
        }
        config
    }
}

/// Runs `kiln import`: prints each failure, the time split and the summary line.
pub fn run(args: ImportArgs) -> eyre::Result<ExitCode> {
    let opts = ImportOptions {
        mode: match args.mode {
            Mode::Interpreter => ImportMode::Interpreter,
            Mode::Jit => ImportMode::Jit,
            Mode::Tiered => ImportMode::Tiered,
        },
        filter: args.filter.clone(),
        service: args.service_config(),
        settle: args.settle,
    };
    let files = kiln_node::collect_files(&args.paths)?;
    if files.is_empty() {
        bail!("no *.json files found in the given paths");
    }
    let bar = progress_bar(files.len());
    let summary = kiln_node::import_files_with(&files, &opts, &mut |progress| match progress {
        Progress::Test(report) => {
            if let Outcome::Failed(failures) = &report.outcome {
                bar.suspend(|| {
                    println!("FAIL {} ({})", report.name, report.file.display());
                    for failure in failures {
                        println!("  {failure}");
                    }
                });
            }
        }
        Progress::File(_) => bar.inc(1),
    })
    .wrap_err("import failed")?;
    bar.finish_and_clear();
    for report in &summary.reports {
        if let Outcome::Skipped(why) = &report.outcome {
            eprintln!("skipped {}: {why}", report.name);
        }
    }
    eprintln!("mode {}: {}", opts.mode, summary.timings);
    let jit = &summary.jit;
    if opts.mode != ImportMode::Interpreter {
        eprintln!(
            "frames: {} compiled, {} interpreted; runtime compilations {}",
            jit.compiled_frames, jit.interpreted_frames, jit.compilations
        );
    }
    if let Some(service) = &jit.service {
        eprintln!(
            "service: {} notifications, {} quick + {} optimised compilations, {} failures, {} verified replays, {} mismatches",
            service.notifications,
            service.compiled_quick,
            service.compiled_optimised,
            service.compile_failures,
            service.verify_matches,
            service.verify_mismatches
        );
        eprintln!(
            "policy {}: {:.1}% of canonical contract gas ran natively; compile time {:.2} s; {} compilations never ran natively",
            opts.service.policy,
            100.0 * service.native_share(),
            service.compile_secs(),
            service.unused_compilations
        );
    }
    println!(
        "{} passed, {} failed, {} skipped",
        summary.passed, summary.failed, summary.skipped
    );
    Ok(if summary.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Progress on stderr, only when it is a terminal.
fn progress_bar(files: usize) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(files as u64);
    if let Ok(style) =
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} files ({eta} left)")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}
