//! `kiln import`: Ethereum blockchain tests imported through kiln's EVM as a node imports blocks
//! (the `kiln-node` library does the work).

use clap::{Args, ValueEnum};
use eyre::{bail, WrapErr};
use indicatif::{ProgressBar, ProgressStyle};
use kiln_exex::{Policy, ServiceConfig};
use kiln_node::{ChainSource, ImportMode, ImportOptions, Importer, Outcome, Progress};
use std::{io::IsTerminal, ops::ControlFlow, path::PathBuf, process::ExitCode};

/// How blocks are executed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Mode {
    /// revm's interpreter.
    Interpreter,
    /// Each code compiled the first time it runs.
    Jit,
    /// As a node: a lookup-only JIT runtime filled by the hot-code service.
    Tiered,
}

impl From<&Mode> for ImportMode {
    fn from(mode: &Mode) -> Self {
        match mode {
            Mode::Interpreter => ImportMode::Interpreter,
            Mode::Jit => ImportMode::Jit,
            Mode::Tiered => ImportMode::Tiered,
        }
    }
}

/// The service's policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum PolicyArg {
    /// kiln's: gas in canonical blocks, decayed, two tiers.
    Heat,
    /// reth's `--jit`: lookups from any execution, one tier.
    Lookups,
}

/// The hot-code service's settings on the command line (tiered mode).
#[derive(Debug, Args)]
pub(crate) struct ServiceArgs {
    /// Read the service's settings from this TOML file (see etc/kiln.toml); the flags below
    /// override it.
    #[arg(long = "jit.config", value_name = "FILE")]
    config: Option<PathBuf>,

    /// How the service decides what to compile: kiln's canonical heat, or reth's `--jit`
    /// policy (compile once after N lookups from any execution) for comparison.
    #[arg(long = "jit.policy", value_enum)]
    policy: Option<PolicyArg>,

    /// Under `--jit.policy lookups`, the lookups after which a code is compiled.
    #[arg(long = "jit.lookup-threshold", value_name = "N")]
    lookup_threshold: Option<u64>,

    /// Heat (decayed gas) at which the service compiles a code at the quick tier.
    #[arg(long = "jit.hot-threshold", value_name = "GAS")]
    hot_threshold: Option<u64>,

    /// Heat at which the service compiles a code at the optimising tier.
    #[arg(long = "jit.optimise-threshold", value_name = "GAS")]
    optimise_threshold: Option<u64>,

    /// The service's compile worker threads.
    #[arg(long = "jit.worker-count", value_name = "N")]
    worker_count: Option<usize>,

    /// Replays new compiled code must match the interpreter on before it serves.
    #[arg(long = "jit.verify-runs", value_name = "N")]
    verify_runs: Option<u32>,

    /// Compile in helper processes (`kiln compile-helper`) instead of this one.
    #[arg(long = "jit.isolation", value_name = "BOOL", action = clap::ArgAction::Set)]
    isolation: Option<bool>,

    /// Share one compiled function among codes that differ only in PUSH immediates
    /// (immutables): `false` compiles every code on its own.
    #[arg(long = "jit.families", value_name = "BOOL", action = clap::ArgAction::Set)]
    families: Option<bool>,
}

impl ServiceArgs {
    /// The settings: the file's (or the defaults, with `isolation` as given), then the flags.
    pub(crate) fn config_with(&self, isolation: bool) -> eyre::Result<ServiceConfig> {
        let mut config = match &self.config {
            Some(path) => {
                ServiceConfig::load(path).wrap_err_with(|| format!("reading {}", path.display()))?
            }
            None => ServiceConfig {
                isolation,
                ..ServiceConfig::default()
            },
        };
        if let Some(policy) = self.policy {
            config.policy = match policy {
                PolicyArg::Heat => Policy::Heat,
                PolicyArg::Lookups => Policy::Lookups,
            };
        }
        if let Some(n) = self.lookup_threshold {
            config.lookup_threshold = n;
        }
        if let Some(gas) = self.hot_threshold {
            config.hot_threshold_gas = gas;
        }
        if let Some(gas) = self.optimise_threshold {
            config.optimise_threshold_gas = gas;
        }
        if let Some(n) = self.worker_count {
            config.worker_count = n;
        }
        if let Some(n) = self.verify_runs {
            config.verify_runs = n;
        }
        if let Some(on) = self.isolation {
            config.isolation = on;
        }
        if let Some(on) = self.families {
            config.families = on;
        }
        config.validate()?;
        Ok(config)
    }

    /// The settings for a node: isolated compilation unless told otherwise.
    pub(crate) fn config(&self) -> eyre::Result<ServiceConfig> {
        self.config_with(true)
    }
}

/// Arguments of `kiln import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Blockchain-test JSON files, or folders searched recursively for `*.json`; with
    /// `--genesis`, files of concatenated RLP blocks (what `reth import` reads).
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,

    /// A geth-format genesis file: the paths are then RLP block files on top of it.
    #[arg(long, value_name = "FILE")]
    genesis: Option<PathBuf>,

    /// With `--genesis`: forkchoice updates between the blocks (`[{"after": N, "head": HASH}]`);
    /// without, each block becomes the head once imported.
    #[arg(long, value_name = "FILE", requires = "genesis")]
    forkchoice: Option<PathBuf>,

    /// How blocks are executed.
    #[arg(long, value_enum, default_value_t = Mode::Interpreter)]
    mode: Mode,

    /// Only import tests whose file path or test name contains this substring.
    #[arg(long, value_name = "SUBSTR")]
    filter: Option<String>,

    /// After each chain notification, wait until the service has compiled and verified what it
    /// queued, so its code serves the next block (tiered mode; repeatable runs, a node never
    /// waits).
    #[arg(long = "jit.settle")]
    settle: bool,

    #[command(flatten)]
    service: ServiceArgs,
}

/// Runs `kiln import`: prints each failure, the time split and the summary line.
pub fn run(args: ImportArgs) -> eyre::Result<ExitCode> {
    let opts = ImportOptions {
        mode: (&args.mode).into(),
        filter: args.filter.clone(),
        // A test run compiles in this process unless told otherwise.
        service: args.service.config_with(false)?,
        settle: args.settle,
    };
    if let Some(genesis) = &args.genesis {
        return import_chain(genesis, &args, &opts);
    }
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
            "policy {}: {:.1}% of canonical contract gas ran natively; compile time {}; {} compilations never ran natively",
            opts.service.policy,
            100.0 * service.native_share(),
            compile_cpu(service),
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

/// The service's compile time per tier and what code families saved.
pub(crate) fn compile_cpu(stats: &kiln_exex::ServiceStats) -> String {
    let (quick, optimised) = stats.compile_secs_per_tier();
    format!(
        "{:.2} s: quick {quick:.2} s, optimising {optimised:.2} s; {} family functions compiled, {} installs served by one",
        quick + optimised,
        stats.family_compilations,
        stats.family_shares
    )
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

/// `kiln import --genesis`: a chain of RLP blocks on a geth genesis, as `reth import` reads it.
fn import_chain(
    genesis: &std::path::Path,
    args: &ImportArgs,
    opts: &ImportOptions,
) -> eyre::Result<ExitCode> {
    let source = ChainSource::from_files(genesis, &args.paths, args.forkchoice.as_deref())?;
    let bar = progress_bar(source.blocks.len());
    let mut importer = Importer::for_options(opts)?;
    let done = importer.import_chain(&source, &mut |_| {
        bar.inc(1);
        ControlFlow::Continue(())
    });
    bar.finish_and_clear();
    let (timings, jit) = importer.shutdown();
    let done = done?;
    eprintln!("mode {}: {timings}", opts.mode);
    if let Some(service) = &jit.service {
        eprintln!(
            "service: {} quick + {} optimised installs (compile time {}), {:.1}% of contract gas native, {} compilations never ran natively",
            service.compiled_quick,
            service.compiled_optimised,
            compile_cpu(service),
            100.0 * service.native_share(),
            service.unused_compilations
        );
    }
    let (number, hash, root) = done.head();
    println!(
        "imported {} blocks, head {number} {hash}, state root {root}",
        done.imported
    );
    match done.error {
        Some(error) => bail!("import stopped at the last valid block: {error}"),
        None => Ok(ExitCode::SUCCESS),
    }
}
