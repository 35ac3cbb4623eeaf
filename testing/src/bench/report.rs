//! What `kiln bench` prints: the machine, a table (or JSON lines), and geometric means.

use std::{collections::BTreeMap, fmt::Write as _};

use serde_json::json;

use super::{
    exec::{CompileReport, FrameCounts},
    measure::Stats,
};
use crate::Mode;

/// The machine the figures were taken on.
#[derive(Clone, Debug)]
pub struct Machine {
    /// CPU model from `/proc/cpuinfo`.
    pub cpu: String,
    /// Cores available to this process.
    pub cores: usize,
    /// Kernel release, when known.
    pub kernel: Option<String>,
}

impl Machine {
    /// Reads the CPU model and core count of this machine.
    pub fn detect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            // x86 says `model name`; some ARM kernels only say `Model` or `Hardware`.
            .find_map(|line| {
                let (key, value) = line.split_once(':')?;
                matches!(key.trim(), "model name" | "Model" | "Hardware")
                    .then(|| value.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown CPU".to_owned());
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .map(|s| s.trim().to_owned());
        Self { cpu, cores, kernel }
    }
}

impl std::fmt::Display for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}, {} cores", self.cpu, self.cores)?;
        if let Some(kernel) = &self.kernel {
            write!(f, ", Linux {kernel}")?;
        }
        Ok(())
    }
}

/// Whether this build caches keccak256 results process-wide (the `keccak-cache` feature, on by
/// default as in reth). The cache outlives a repetition, so a workload that hashes the same
/// inputs every repetition finds them cached from the second one on.
pub const KECCAK_CACHE: bool = cfg!(feature = "keccak-cache");

/// The figures of one mode on one workload.
#[derive(Clone, Debug)]
pub struct Row {
    /// Workload name.
    pub workload: String,
    /// Its group (folder).
    pub group: String,
    /// Its file.
    pub file: String,
    /// Fork it ran under.
    pub fork: String,
    /// The mode.
    pub mode: Mode,
    /// Timing.
    pub stats: Stats,
    /// Gas used by the timed transaction.
    pub gas_used: u64,
    /// `success`, `revert` or `halt: <reason>`.
    pub status: String,
    /// Compile figures (compiled modes).
    pub compile: Option<CompileReport>,
    /// Frames of one run (kiln modes).
    pub frames: Option<FrameCounts>,
    /// Interpreter median / this mode's median, from the same run.
    pub speedup: Option<f64>,
    /// This mode's median / stock revm's median (> 1: slower than revm).
    pub time_vs_revm: Option<f64>,
}

impl Row {
    /// Million gas per second at the median time.
    pub fn mgas_per_s(&self) -> f64 {
        // gas / ns * 1e9 / 1e6
        self.gas_used as f64 / self.stats.median_ns * 1e3
    }

    /// One JSON object (one line of `--json`).
    pub fn to_json(&self) -> serde_json::Value {
        let compile = self.compile.as_ref();
        json!({
            "workload": self.workload,
            "group": self.group,
            "file": self.file,
            "fork": self.fork,
            "mode": self.mode.as_str(),
            "median_ns": self.stats.median_ns,
            "p10_ns": self.stats.p10_ns,
            "p90_ns": self.stats.p90_ns,
            "mad_ns": self.stats.mad_ns,
            "reps": self.stats.reps,
            "samples": self.stats.samples,
            "gas_used": self.gas_used,
            "status": self.status,
            "mgas_per_s": self.mgas_per_s(),
            "speedup": self.speedup,
            "time_vs_revm": self.time_vs_revm,
            "compile_ms": compile.map(CompileReport::compile_ms),
            "compile_ms_per_kib": compile.and_then(CompileReport::compile_ms_per_kib),
            "optimise_ms": compile.and_then(CompileReport::optimise_ms),
            "optimise_ms_per_kib": compile.and_then(CompileReport::optimise_ms_per_kib),
            "code_bytes": compile.map(|c| c.code_bytes),
            "object_bytes": compile.map(|c| c.object_bytes),
            "compile_failures": compile.map(|c| c.failures.clone()),
            "not_profiled": compile.map(|c| c.not_profiled.clone()),
            "compile_notes": compile.map(|c| c.notes.clone()),
            "frames_compiled": self.frames.map(|f| f.compiled),
            "frames_interpreted": self.frames.map(|f| f.interpreted),
            "frames_handed_off": self.frames.map(|f| f.handed_off),
            "keccak_cache": KECCAK_CACHE,
        })
    }
}

/// `1.23 µs`, `45.6 ms`, ... with three significant digits.
pub fn fmt_ns(ns: f64) -> String {
    let (value, unit) = if ns >= 1e9 {
        (ns / 1e9, "s")
    } else if ns >= 1e6 {
        (ns / 1e6, "ms")
    } else if ns >= 1e3 {
        (ns / 1e3, "µs")
    } else {
        (ns, "ns")
    };
    let digits = if value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    format!("{value:.digits$} {unit}")
}

/// `12,345,678`.
pub fn fmt_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The human-readable table, one block of rows per workload.
pub struct Table {
    name_width: usize,
}

impl Table {
    /// A table whose first column fits `names`.
    pub fn new<'a>(names: impl Iterator<Item = &'a str>) -> Self {
        let name_width = names.map(|n| n.chars().count()).max().unwrap_or(8).max(8);
        Self { name_width }
    }

    /// The header line.
    pub fn header(&self) -> String {
        format!(
            "{:<nw$}  {:>13}  {:<12}  {:>9}  {:>15}  {:>9}  {:>8}  {:>9}  {:>10}  {:>7}  {:>11}",
            "workload",
            "gas used",
            "mode",
            "median",
            "p10 / p90",
            "Mgas/s",
            "speedup",
            "time/revm",
            "compile ms",
            "ms/KiB",
            "object B",
            nw = self.name_width
        )
    }

    /// The rows of one workload, then notes (compile failures, frames left on the interpreter).
    pub fn block(&self, rows: &[Row]) -> String {
        let mut out = String::new();
        for (i, row) in rows.iter().enumerate() {
            let (name, gas) = if i == 0 {
                (row.workload.as_str(), fmt_thousands(row.gas_used))
            } else {
                ("", String::new())
            };
            let s = &row.stats;
            let spread = format!(
                "{:+.1}% {:+.1}%",
                (s.p10_ns / s.median_ns - 1.0) * 100.0,
                (s.p90_ns / s.median_ns - 1.0) * 100.0
            );
            let opt = |v: Option<String>| v.unwrap_or_default();
            let compile = row.compile.as_ref();
            let _ = writeln!(
                out,
                "{:<nw$}  {:>13}  {:<12}  {:>9}  {:>15}  {:>9.1}  {:>8}  {:>9}  {:>10}  {:>7}  {:>11}",
                name,
                gas,
                row.mode.as_str(),
                fmt_ns(s.median_ns),
                spread,
                row.mgas_per_s(),
                opt(row.speedup.map(|x| format!("{x:.2}x"))),
                // Only where it is the requirement being checked: kiln with nothing compiled.
                opt(row
                    .time_vs_revm
                    .filter(|_| row.mode == Mode::Interpreter)
                    .map(|x| format!("{x:.3}"))),
                opt(compile.map(|c| format!("{:.1}", c.compile_ms()))),
                opt(compile
                    .and_then(CompileReport::compile_ms_per_kib)
                    .map(|x| format!("{x:.1}"))),
                opt(compile.map(|c| fmt_thousands(c.object_bytes))),
                nw = self.name_width
            );
            if let (Some(ms), Some(_)) = (
                compile.and_then(CompileReport::optimise_ms),
                compile.and_then(CompileReport::optimise_ms_per_kib),
            ) {
                let _ = writeln!(
                    out,
                    "    note: {}: optimised in the background in {ms:.1} ms after the baseline tier's {:.1} ms",
                    row.mode,
                    compile.map_or(0.0, CompileReport::compile_ms)
                );
            }
            for note in compile.map(|c| c.notes.as_slice()).unwrap_or_default() {
                let _ = writeln!(out, "    note: {}: {note}", row.mode);
            }
            for failure in compile.map(|c| c.failures.as_slice()).unwrap_or_default() {
                let _ = writeln!(out, "    note: {}: not compiled: {failure}", row.mode);
            }
            for hash in compile
                .map(|c| c.not_profiled.as_slice())
                .unwrap_or_default()
            {
                let _ = writeln!(
                    out,
                    "    note: {}: {hash} did not run in the profile",
                    row.mode
                );
            }
            if let Some(f) = row.frames.filter(|_| row.mode.compiles()) {
                let total = f.compiled + f.interpreted;
                if f.interpreted > 0 {
                    let _ = writeln!(
                        out,
                        "    note: {}: {} of {total} frames ran on the interpreter",
                        row.mode, f.interpreted
                    );
                }
                if f.handed_off > 0 {
                    let _ = writeln!(
                        out,
                        "    note: {}: {} of {total} frames went on in the interpreter mid-way",
                        row.mode, f.handed_off
                    );
                }
            }
        }
        out
    }
}

/// Geometric mean, or `None` for no values.
pub fn geomean(values: &[f64]) -> Option<f64> {
    (!values.is_empty())
        .then(|| (values.iter().map(|v| v.ln()).sum::<f64>() / values.len() as f64).exp())
}

/// Geometric means of speedups per compiled mode and group, and kiln-vs-revm time ratios.
pub struct Summary {
    /// (mode, group) -> speedups; group `all` holds every workload.
    speedups: BTreeMap<(Mode, String), Vec<f64>>,
    /// (workload, kiln interpreter time / revm time).
    dispatch: Vec<(String, f64)>,
    /// mode -> compile milliseconds per KiB of bytecode, one per workload.
    compile_per_kib: BTreeMap<Mode, Vec<f64>>,
    /// mode -> background optimising compile milliseconds per KiB (`tiered`).
    optimise_per_kib: BTreeMap<Mode, Vec<f64>>,
    /// (mode, file) -> compile milliseconds of the file's code: (first or only tier,
    /// optimising tier of `tiered`). Workloads of one file share their code, counted once.
    compile_cpu: BTreeMap<(Mode, String), (f64, f64)>,
}

/// Name of the pseudo-group holding every workload.
pub const ALL: &str = "all";

impl Summary {
    /// Empty.
    pub fn new() -> Self {
        Self {
            speedups: BTreeMap::new(),
            dispatch: Vec::new(),
            compile_per_kib: BTreeMap::new(),
            optimise_per_kib: BTreeMap::new(),
            compile_cpu: BTreeMap::new(),
        }
    }

    /// Adds a row's ratios.
    pub fn add(&mut self, row: &Row) {
        if let (Some(speedup), true) = (row.speedup, row.mode.compiles()) {
            for group in [row.group.as_str(), ALL] {
                self.speedups
                    .entry((row.mode, group.to_owned()))
                    .or_default()
                    .push(speedup);
            }
        }
        type Figure = fn(&CompileReport) -> Option<f64>;
        let per_kib: [(Figure, _); 2] = [
            (CompileReport::compile_ms_per_kib, &mut self.compile_per_kib),
            (
                CompileReport::optimise_ms_per_kib,
                &mut self.optimise_per_kib,
            ),
        ];
        for (figure, by_mode) in per_kib {
            if let Some(x) = row.compile.as_ref().and_then(figure) {
                by_mode.entry(row.mode).or_default().push(x);
            }
        }
        if let Some(c) = row.compile.as_ref() {
            self.compile_cpu.insert(
                (row.mode, row.file.clone()),
                (c.compile_ms(), c.optimise_ms().unwrap_or(0.0)),
            );
        }
        if let (Some(ratio), Mode::Interpreter) = (row.time_vs_revm, row.mode) {
            self.dispatch.push((row.workload.clone(), ratio));
        }
    }

    /// Geometric mean speedup of `mode` over `group`, with the number of workloads.
    pub fn speedup(&self, mode: Mode, group: &str) -> Option<(f64, usize)> {
        let values = self.speedups.get(&(mode, group.to_owned()))?;
        geomean(values).map(|g| (g, values.len()))
    }

    /// Geometric mean of kiln-interpreter / revm time, with the number of workloads.
    pub fn dispatch_ratio(&self) -> Option<(f64, usize)> {
        let values: Vec<f64> = self.dispatch.iter().map(|(_, r)| *r).collect();
        geomean(&values).map(|g| (g, values.len()))
    }

    /// The closing lines of the table output.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let modes: Vec<Mode> = {
            let mut m: Vec<Mode> = self.speedups.keys().map(|(mode, _)| *mode).collect();
            m.dedup();
            m
        };
        let mut groups: Vec<String> = self
            .speedups
            .keys()
            .map(|(_, g)| g.clone())
            .filter(|g| g != ALL)
            .collect();
        groups.sort();
        groups.dedup();
        groups.push(ALL.to_owned());
        if !modes.is_empty() {
            let _ = writeln!(
                out,
                "geometric mean speedup over the interpreter (interpreter median / mode median):"
            );
            for mode in &modes {
                let cells: Vec<String> = groups
                    .iter()
                    .filter_map(|g| {
                        self.speedup(*mode, g)
                            .map(|(x, n)| format!("{g} {x:.2}x ({n} workloads)"))
                    })
                    .collect();
                let _ = writeln!(out, "  {:<4} {}", mode.as_str(), cells.join(", "));
            }
        }
        for (what, map) in [
            ("compile time", &self.compile_per_kib),
            ("background optimising compile time", &self.optimise_per_kib),
        ] {
            for (mode, values) in map {
                let mut sorted = values.clone();
                sorted.sort_by(f64::total_cmp);
                if let (Some(min), Some(max)) = (sorted.first(), sorted.last()) {
                    let _ = writeln!(
                        out,
                        "{what} per KiB of bytecode ({}): median {:.1} ms/KiB over {} workloads (min {min:.1}, max {max:.1})",
                        mode.as_str(),
                        median(&sorted),
                        sorted.len()
                    );
                }
            }
        }
        let mut cpu: BTreeMap<Mode, (f64, f64, usize)> = BTreeMap::new();
        for ((mode, _), (first, optimise)) in &self.compile_cpu {
            let t = cpu.entry(*mode).or_default();
            (t.0, t.1, t.2) = (t.0 + first, t.1 + optimise, t.2 + 1);
        }
        for (mode, (first, optimise, files)) in cpu {
            let split = if optimise > 0.0 {
                format!(
                    " (quick tier {:.2} s, optimising tier {:.2} s)",
                    first / 1e3,
                    optimise / 1e3
                )
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "compile CPU of the compiled code ({}): {:.2} s over {files} files{split}",
                mode.as_str(),
                (first + optimise) / 1e3,
            );
        }
        if let Some((ratio, n)) = self.dispatch_ratio() {
            let (worst_name, worst) = self
                .dispatch
                .iter()
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .cloned()
                .unwrap_or_default();
            let verdict = if ratio <= 1.02 {
                "within"
            } else {
                "NOT within"
            };
            let _ = writeln!(
                out,
                "dispatch overhead, kiln with nothing compiled vs stock revm (median time ratio): \
                 geometric mean {ratio:.3} over {n} workloads ({verdict} the 2% requirement); \
                 highest {worst:.3} ({worst_name})"
            );
        }
        out
    }
}

/// Median of sorted, non-empty values.
fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

impl Default for Summary {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting() {
        assert_eq!(fmt_ns(950.0), "950 ns");
        assert_eq!(fmt_ns(1_234.0), "1.23 µs");
        assert_eq!(fmt_ns(45_600_000.0), "45.6 ms");
        assert_eq!(fmt_thousands(1_234_567), "1,234,567");
        assert_eq!(fmt_thousands(999), "999");
        let g = geomean(&[2.0, 8.0]).unwrap();
        assert!((g - 4.0).abs() < 1e-12);
        assert!(geomean(&[]).is_none());
        assert_eq!(median(&[1.0, 5.0, 9.0]), 5.0);
        assert_eq!(median(&[1.0, 3.0]), 2.0);
    }
}
