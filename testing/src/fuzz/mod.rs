//! `kiln fuzz`: differential fuzzing of the compiled modes against revm's interpreter.
//!
//! Each generated program (module `gen`) runs under every requested fork on stock revm and in
//! every compiled mode; the outcomes (gas, refund, halt reason, output, logs, state diff) must be
//! equal. A divergence is minimized (module `minimize`) and written as a GeneralStateTests file
//! whose expectation is the interpreter's (module `statetest_out`), next to a one-line summary.
//! `--bombs` instead measures the compiler on worst-case inputs (module `bombs`).

mod bombs;
mod exec;
mod gen;
mod minimize;
mod program;
mod statetest_out;

use std::{
    path::PathBuf,
    process::ExitCode,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed},
        Mutex,
    },
    time::{Duration, Instant},
};

use eyre::{bail, WrapErr};
use indicatif::{ProgressBar, ProgressStyle};
use kiln_compiler::{CompileOptions, Fault, OptLevel};

use rayon::prelude::*;
use serde_json::json;

use crate::{
    difftest::{run_revm, Case, Outcome},
    statetest::Fork,
    Mode,
};
use exec::{describe, forget, run_compiled, Mismatch, ModeRuntime};
use program::Program;

/// Arguments of `kiln fuzz`.
#[derive(Debug, clap::Args)]
pub struct FuzzArgs {
    /// Campaign seed: program `i` of seed `s` is always the same program.
    #[arg(long, default_value_t = 1)]
    seed: u64,

    /// Number of programs to generate (each runs under every fork and mode). Default 1000
    /// unless --duration is given.
    #[arg(long, conflicts_with = "duration")]
    count: Option<u64>,

    /// Run for this long instead of a fixed count, e.g. `90s`, `10m`, `2h`.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,

    /// Index of the first program (with --count 1, re-runs one program of a campaign).
    #[arg(long, default_value_t = 0)]
    start: u64,

    /// Compiled modes compared with the interpreter: jit, jit-partial, jit-family, jit-profiled,
    /// aot.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "jit")]
    modes: Vec<Mode>,

    /// Forks every program runs under (fixture names, any case).
    #[arg(long, value_delimiter = ',', default_value = "cancun,prague,osaka")]
    forks: Vec<String>,

    /// Where minimized reproducers (state tests and summaries) are written.
    #[arg(long, default_value = "fuzz-out")]
    out: PathBuf,

    /// Compile with a deliberate miscompilation, to check that the fuzzer finds it:
    /// `gas:<opcode hex>:<delta>` (wrong static gas) or `flip-lt` (LT lowered as GT).
    #[arg(long, value_name = "SPEC")]
    inject_fault: Option<String>,

    /// Optimisation level of the compiled modes (0-3, or `baseline`).
    #[arg(long, value_name = "N", default_value = "2")]
    opt_level: OptLevel,

    /// Divergences minimized and written; later ones are only counted.
    #[arg(long, default_value_t = 5)]
    max_reports: usize,

    /// Stop the campaign once this many divergences have been found.
    #[arg(long, value_name = "N")]
    stop_after: Option<u64>,

    /// Instead of fuzzing, compile worst-case programs (compile-time bombs) and report compile
    /// time and peak memory of each.
    #[arg(long)]
    bombs: bool,

    /// With --bombs: the size in bytes of the bombs that stand for mainnet-sized (24 KiB) code.
    #[arg(long, value_name = "BYTES", default_value_t = bombs::KIB24)]
    bomb_size: usize,

    /// With --bombs: only the bombs whose name contains this.
    #[arg(long, value_name = "SUBSTR")]
    bomb_filter: Option<String>,

    /// Internal: compile one bomb and report (run by --bombs in a child process).
    #[arg(long, hide = true, value_name = "NAME")]
    bomb_child: Option<String>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (expected e.g. 90s, 10m, 2h)"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => {
            return Err(format!(
                "unknown duration unit {unit:?} (expected s, m or h)"
            ))
        }
    };
    Ok(Duration::from_secs_f64(secs))
}

/// `cancun` -> `Cancun`, then the state-test fork parser.
fn parse_fork(name: &str) -> eyre::Result<Fork> {
    let mut chars = name.trim().chars();
    let label: String = chars
        .next()
        .map(|c| c.to_ascii_uppercase())
        .into_iter()
        .chain(chars)
        .collect();
    Fork::parse(&label).wrap_err_with(|| format!("invalid fork {name:?}"))
}

/// Programs per batch. Runtimes are rebuilt between batches, so compiled code that the
/// per-program cleanup missed cannot accumulate over a long campaign.
const BATCH: u64 = 64;

/// The modes `kiln fuzz` compares with the interpreter.
pub const MODES: [Mode; 5] = [
    Mode::Jit,
    Mode::JitPartial,
    Mode::JitFamily,
    Mode::JitProfiled,
    Mode::Aot,
];

/// Runs the command; the exit code is non-zero when any divergence was found.
pub fn run(args: FuzzArgs) -> eyre::Result<ExitCode> {
    if let Some(name) = &args.bomb_child {
        return bombs::child(name, args.bomb_size, args.opt_level);
    }
    if args.bombs {
        return bombs::run(args.bomb_size, args.bomb_filter.as_deref(), args.opt_level);
    }
    let forks = args
        .forks
        .iter()
        .map(|f| parse_fork(f))
        .collect::<eyre::Result<Vec<_>>>()?;
    if forks.is_empty() || args.modes.is_empty() {
        bail!("need at least one fork and one mode");
    }
    for mode in &args.modes {
        mode.ensure_one_of("fuzz", &MODES)?;
    }
    let count = match (args.count, args.duration) {
        (Some(n), _) => Some(n),
        (None, Some(_)) => None,
        (None, None) => Some(1000),
    };
    std::fs::create_dir_all(&args.out)
        .wrap_err_with(|| format!("creating {}", args.out.display()))?;
    let fault = args
        .inject_fault
        .as_deref()
        .map(|s| {
            s.parse::<Fault>()
                .map_err(|e| eyre::eyre!("invalid --inject-fault: {e}"))
        })
        .transpose()?;
    let options = CompileOptions {
        opt_level: args.opt_level,
        fault,
        ..Default::default()
    };

    let campaign = Campaign {
        seed: args.seed,
        fault_spec: args.inject_fault.clone(),
        forks,
        out: args.out.clone(),
        gen: gen::GenConfig::default(),
        max_reports: args.max_reports,
        stop_after: args.stop_after,
        deadline: args.duration.map(|d| Instant::now() + d),
        progress: progress_bar(count),
        stats: Stats::default(),
        reserved: AtomicUsize::new(0),
        reports: Mutex::new(Vec::new()),
        stop: AtomicBool::new(false),
        last_log_minute: AtomicU64::new(0),
    };
    let fork_names: Vec<&str> = campaign.forks.iter().map(|f| f.label.as_str()).collect();
    let mode_names: Vec<&str> = args.modes.iter().map(|m| m.as_str()).collect();
    tracing::info!(
        seed = args.seed,
        start = args.start,
        count = ?count,
        duration = ?args.duration,
        forks = %fork_names.join(","),
        modes = %mode_names.join(","),
        fault = ?fault,
        "fuzzing"
    );

    let started = Instant::now();
    let end = count.map_or(u64::MAX, |n| args.start.saturating_add(n));
    let mut next = args.start;
    while next < end && !campaign.should_stop() {
        let batch_end = next.saturating_add(BATCH).min(end);
        let runtimes = args
            .modes
            .iter()
            .map(|&m| ModeRuntime::new(m, options))
            .collect::<eyre::Result<Vec<_>>>()?;
        // One program per task: program costs vary by orders of magnitude.
        let indices: Vec<u64> = (next..batch_end).collect();
        indices
            .into_par_iter()
            .with_max_len(1)
            .for_each(|index| campaign.run_program(index, &runtimes));
        for rt in &runtimes {
            // No background compilation outlives its batch (nor the command).
            rt.runtime.shutdown();
            campaign.stats.absorb(&rt.runtime.stats);
        }
        next = batch_end;
    }
    campaign.progress.finish_and_clear();
    let elapsed = started.elapsed();

    let s = &campaign.stats;
    let (programs, cases, runs, divergences) = (
        s.programs.load(Relaxed),
        s.cases.load(Relaxed),
        s.runs.load(Relaxed),
        s.divergences.load(Relaxed),
    );
    let reports = campaign
        .reports
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    println!(
        "seed {}, programs from index {} ({} run), forks {}, modes {}{}",
        args.seed,
        args.start,
        programs,
        fork_names.join(","),
        mode_names.join(","),
        args.inject_fault
            .as_deref()
            .map(|f| format!(", injected fault {f}"))
            .unwrap_or_default()
    );
    println!(
        "{cases} cases ({runs} compared executions incl. lower-gas reruns) in {:.1} s: {:.1} cases/s",
        elapsed.as_secs_f64(),
        cases as f64 / elapsed.as_secs_f64().max(1e-9)
    );
    println!(
        "compiled {} functions ({} refused or failed) in {:.1} s of compile time; {} frames ran compiled ({} handed to the interpreter mid-way), {} interpreted",
        s.compilations.load(Relaxed),
        s.compile_failures.load(Relaxed),
        s.compile_micros.load(Relaxed) as f64 / 1e6,
        s.compiled_frames.load(Relaxed),
        s.handoffs.load(Relaxed),
        s.interpreted_frames.load(Relaxed)
    );
    let endings = s.endings.lock().unwrap_or_else(|e| e.into_inner());
    let total: u64 = endings.values().sum::<u64>().max(1);
    let mut endings: Vec<_> = endings.iter().collect();
    endings.sort_by(|a, b| b.1.cmp(a.1));
    println!(
        "interpreter outcomes per (program, fork): {}",
        endings
            .iter()
            .map(|(k, v)| format!("{k} {:.1}%", **v as f64 * 100.0 / total as f64))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if !reports.is_empty() {
        println!("reproducers in {}:", args.out.display());
        for r in &reports {
            println!("  {r}");
        }
    }
    println!("{programs} programs, {cases} cases, {divergences} divergences");
    Ok(if divergences == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn progress_bar(count: Option<u64>) -> ProgressBar {
    let (bar, template) = match count {
        Some(n) => (
            ProgressBar::new(n),
            "{elapsed_precise} [{bar:30}] {pos}/{len} programs ({eta} left) {msg}",
        ),
        None => (
            ProgressBar::new_spinner(),
            "{elapsed_precise} {spinner} {pos} programs {msg}",
        ),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Counters, shared by the worker threads.
#[derive(Default)]
struct Stats {
    programs: AtomicU64,
    /// (program, fork, mode) triples compared.
    cases: AtomicU64,
    /// Compiled executions compared with the interpreter (cases plus lower-gas reruns).
    runs: AtomicU64,
    divergences: AtomicU64,
    compilations: AtomicU64,
    compile_failures: AtomicU64,
    compile_micros: AtomicU64,
    compiled_frames: AtomicU64,
    interpreted_frames: AtomicU64,
    handoffs: AtomicU64,
    /// How the interpreter's runs ended, by kind: evidence that programs get somewhere.
    endings: Mutex<std::collections::BTreeMap<String, u64>>,
}

impl Stats {
    fn absorb(&self, rt: &kiln_runtime::RuntimeStats) {
        self.compilations
            .fetch_add(rt.compilations.load(Relaxed), Relaxed);
        self.compile_failures
            .fetch_add(rt.compile_failures.load(Relaxed), Relaxed);
        self.compile_micros
            .fetch_add(rt.compile_micros.load(Relaxed), Relaxed);
        self.compiled_frames
            .fetch_add(rt.compiled_frames.load(Relaxed), Relaxed);
        self.interpreted_frames
            .fetch_add(rt.interpreted_frames.load(Relaxed), Relaxed);
        self.handoffs.fetch_add(rt.handoffs.load(Relaxed), Relaxed);
    }
}

/// Everything the workers share.
struct Campaign {
    seed: u64,
    /// `--inject-fault` as given, for the reproduction command.
    fault_spec: Option<String>,
    forks: Vec<Fork>,
    out: PathBuf,
    gen: gen::GenConfig,
    max_reports: usize,
    stop_after: Option<u64>,
    deadline: Option<Instant>,
    progress: ProgressBar,
    stats: Stats,
    /// Divergences claimed for minimization (at most `max_reports`).
    reserved: AtomicUsize,
    /// Summary lines of the written reproducers.
    reports: Mutex<Vec<String>>,
    stop: AtomicBool,
    /// The last whole minute a progress line was logged for (when the bar is hidden).
    last_log_minute: AtomicU64,
}

impl Campaign {
    fn should_stop(&self) -> bool {
        self.stop.load(Relaxed) || self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    fn run_program(&self, index: u64, runtimes: &[ModeRuntime]) {
        if self.should_stop() {
            return;
        }
        let program = gen::generate(self.seed, index, &self.gen);
        for (f, fork) in self.forks.iter().enumerate() {
            let case = program.case(fork.spec);
            let reference = run_revm(&case);
            *self
                .stats
                .endings
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(exec::ending(&reference))
                .or_default() += 1;
            let mut outcomes = Vec::new();
            self.stats.cases.fetch_add(runtimes.len() as u64, Relaxed);
            self.compare(
                &program,
                index,
                fork,
                &case,
                &reference,
                runtimes,
                &mut outcomes,
            );
            // The same program out of gas at another point: half of the successful runs are
            // repeated with a gas limit below what they spent.
            if let Ok(r) = &reference.result {
                let spent = r.gas().total_gas_spent();
                if spent > 21_000 && (index + f as u64).is_multiple_of(2) {
                    let mut lower = program.clone();
                    lower.gas_limit =
                        gen::lower_gas_limit(self.seed.wrapping_add(f as u64), index, spent);
                    let case = lower.case(fork.spec);
                    let reference = run_revm(&case);
                    self.compare(
                        &lower,
                        index,
                        fork,
                        &case,
                        &reference,
                        runtimes,
                        &mut outcomes,
                    );
                    outcomes.push(reference);
                }
            }
            outcomes.push(reference);
            let refs: Vec<_> = outcomes.iter().collect();
            for rt in runtimes {
                forget(&program, fork.spec, &refs, rt);
            }
        }
        let done = self.stats.programs.fetch_add(1, Relaxed) + 1;
        self.progress.inc(1);
        if self.progress.is_hidden() {
            // No terminal (a log file, CI): a progress line a minute instead of the bar.
            let minute = self.progress.elapsed().as_secs() / 60;
            if self.last_log_minute.fetch_max(minute, Relaxed) < minute {
                tracing::info!(
                    programs = done,
                    cases = self.stats.cases.load(Relaxed),
                    divergences = self.stats.divergences.load(Relaxed),
                    "{:.1} cases/s",
                    self.stats.cases.load(Relaxed) as f64
                        / self.progress.elapsed().as_secs_f64().max(1e-9)
                );
            }
        }
        if done.is_multiple_of(4) {
            let elapsed = self.progress.elapsed().as_secs_f64().max(1e-9);
            let cases = self.stats.cases.load(Relaxed);
            self.progress.set_message(format!(
                "| {cases} cases ({:.1}/s) | {} divergences",
                cases as f64 / elapsed,
                self.stats.divergences.load(Relaxed)
            ));
        }
    }

    /// Runs `case` in every compiled mode, records any divergence from `reference`, and keeps
    /// the outcomes (their compiled code is forgotten afterwards).
    #[allow(clippy::too_many_arguments)]
    fn compare(
        &self,
        program: &Program,
        index: u64,
        fork: &Fork,
        case: &Case,
        reference: &Outcome,
        runtimes: &[ModeRuntime],
        outcomes: &mut Vec<Outcome>,
    ) {
        for rt in runtimes {
            self.stats.runs.fetch_add(1, Relaxed);
            let got = run_compiled(case, rt);
            if got != *reference {
                let mismatch = Mismatch {
                    reference: reference.clone(),
                    got: got.clone(),
                };
                self.divergence(program, index, fork, rt, mismatch);
            }
            outcomes.push(got);
        }
    }

    fn divergence(
        &self,
        program: &Program,
        index: u64,
        fork: &Fork,
        rt: &ModeRuntime,
        mismatch: Mismatch,
    ) {
        let found = self.stats.divergences.fetch_add(1, Relaxed) + 1;
        if self.stop_after.is_some_and(|n| found >= n) {
            self.stop.store(true, Relaxed);
        }
        let claimed = self.reserved.fetch_add(1, Relaxed);
        if claimed >= self.max_reports {
            tracing::debug!(index, fork = %fork.label, mode = rt.mode.as_str(), diff = %mismatch.describe(rt.mode), "divergence (not minimized: --max-reports reached)");
            return;
        }
        self.progress.suspend(|| {
            tracing::warn!(index, fork = %fork.label, mode = rt.mode.as_str(), diff = %mismatch.describe(rt.mode), "divergence; minimizing");
        });
        let line = match self.write_reproducer(program, index, fork, rt) {
            Ok(line) => line,
            Err(e) => format!(
                "program {index} ({}, {}): could not write a reproducer: {e:#}",
                fork.label,
                rt.mode.as_str()
            ),
        };
        self.progress.suspend(|| println!("{line}"));
        self.reports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(line);
    }

    /// Minimizes, writes `<name>.json` and `<name>.txt`, and returns the summary line.
    fn write_reproducer(
        &self,
        program: &Program,
        index: u64,
        fork: &Fork,
        rt: &ModeRuntime,
    ) -> eyre::Result<String> {
        let started = Instant::now();
        let min = minimize::minimize(program.clone(), fork, rt);
        let p = &min.program;
        let case = p.case(fork.spec);
        let reference = run_revm(&case);
        let got = run_compiled(&case, rt);
        forget(p, fork.spec, &[&reference, &got], rt);
        let mode = rt.mode.as_str();
        let diff = describe(&reference, &got, mode).join("; ");
        let place = minimize::neighbourhood(p, fork, rt);
        let entry = p.contracts.first().map(|c| c.code()).unwrap_or_default();
        let name = format!(
            "fuzz_s{}_p{}_{}_{}",
            self.seed,
            index,
            fork.label.to_lowercase(),
            mode
        );
        let path = self.out.join(format!("{name}.json"));
        let fault = self.fault_spec.clone();
        let info = json!({
            "comment": "Minimized by `kiln fuzz` from a divergence between revm's interpreter and kiln's compiled code. The expected post state, logs hash and output are the interpreter's.",
            "divergence": diff,
            "mode": mode,
            "injectedFault": fault,
            "neighbourhood": place.as_ref().map(|(_, n)| n.clone()),
            "entryCode": program::disassemble_line(&entry, 64),
            "reproduce": format!(
                "kiln fuzz --seed {} --start {index} --count 1 --forks {} --modes {mode}{}",
                self.seed,
                fork.label.to_lowercase(),
                self.fault_spec.as_deref().map(|f| format!(" --inject-fault {f}")).unwrap_or_default()
            ),
        });
        statetest_out::write(&path, &name, p, fork, &reference, info)?;
        let (passes, why) = statetest_out::passes_compiled(&path, rt)?;
        let statetest = if passes {
            format!("statetest: passes in interpreter and {mode} mode (the difference is not visible in root, logs or output)")
        } else {
            format!(
                "statetest: passes in interpreter mode, fails in {mode} mode ({})",
                why.unwrap_or_default()
            )
        };
        let neighbourhood = match &place {
            Some((pc, text)) => format!("at pc {pc}: {text}"),
            None => format!(
                "entry code: {} (no prefix of it diverges alone)",
                program::disassemble_line(&entry, 16)
            ),
        };
        let line = format!(
            "{name}: {} {mode}: {diff} | {neighbourhood} | {} bytes of code in {} contract(s), chunks [{}], {} tests, {:.1} s | {statetest} | {}",
            fork.label,
            p.code_size(),
            p.contracts.len(),
            min.kinds.join(","),
            min.tests,
            started.elapsed().as_secs_f64(),
            path.display()
        );
        std::fs::write(self.out.join(format!("{name}.txt")), format!("{line}\n"))?;
        Ok(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("5").unwrap(), Duration::from_secs(5));
        assert!(parse_duration("5d").is_err());
    }

    #[test]
    fn fork_names_are_case_insensitive_on_the_first_letter() {
        assert_eq!(
            parse_fork("osaka").unwrap().spec,
            revm::primitives::hardfork::SpecId::OSAKA
        );
        assert_eq!(
            parse_fork("Cancun").unwrap().spec,
            revm::primitives::hardfork::SpecId::CANCUN
        );
        assert!(parse_fork("nope").is_err());
    }
}
