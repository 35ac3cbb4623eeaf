//! Per-case results and how they are printed.

use std::{collections::BTreeMap, io::Write};

use alloy_primitives::{Bytes, B256};
use serde::Serialize;

use crate::Mode;

/// Verdict of one case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Matched the expected post state.
    Passed,
    /// Did not match, could not be loaded, or execution broke.
    Failed,
    /// Not run; the string groups skips in the summary.
    Skipped(&'static str),
    /// Ran, but the fixture has no expectation to compare with (`"pass": null`).
    Unverified,
}

/// Result of one (file, test, fork, index) case, or of a file that could not be loaded.
#[derive(Debug)]
pub struct CaseReport {
    /// File the case came from, as found on disk.
    pub file: String,
    /// Test name; `None` when the whole file failed to load.
    pub name: Option<String>,
    /// Fork label as written in the fixture (or the default fork).
    pub fork: Option<String>,
    /// Index into the fork's `post` list (or into the generated combinations).
    pub index: Option<usize>,
    /// Execution mode.
    pub mode: Mode,
    /// Verdict.
    pub outcome: Outcome,
    /// Computed post-state root.
    pub state_root: Option<B256>,
    /// Computed logs hash.
    pub logs_hash: Option<B256>,
    /// Expected `(state root, logs hash)`, when the fixture has them.
    pub expected: Option<(B256, B256)>,
    /// Gas used (summed over a transaction sequence).
    pub gas_used: Option<u64>,
    /// Return data of the (last) transaction; empty for halts, `None` when nothing ran.
    pub output: Option<Bytes>,
    /// Why the case failed or was skipped.
    pub error: Option<String>,
}

impl CaseReport {
    /// A report with no results yet, for the given case coordinates.
    pub fn new(
        file: &str,
        name: Option<&str>,
        fork: Option<&str>,
        index: Option<usize>,
        mode: Mode,
    ) -> Self {
        Self {
            file: file.to_owned(),
            name: name.map(str::to_owned),
            fork: fork.map(str::to_owned),
            index,
            mode,
            outcome: Outcome::Failed,
            state_root: None,
            logs_hash: None,
            expected: None,
            gas_used: None,
            output: None,
            error: None,
        }
    }

    /// Marks the report failed with `error`.
    pub fn failed(mut self, error: impl Into<String>) -> Self {
        self.outcome = Outcome::Failed;
        self.error = Some(error.into());
        self
    }

    /// Marks the report skipped: `category` groups it in the summary, `reason` is the detail.
    pub fn skipped(mut self, category: &'static str, reason: impl Into<String>) -> Self {
        self.outcome = Outcome::Skipped(category);
        self.error = Some(format!("skipped: {}", reason.into()));
        self
    }

    /// One JSON line, fields in a fixed order.
    pub fn to_json_line(&self) -> String {
        let line = JsonLine {
            file: &self.file,
            name: self.name.as_deref(),
            fork: self.fork.as_deref(),
            index: self.index,
            mode: self.mode.as_str(),
            pass: match self.outcome {
                Outcome::Passed => Some(true),
                Outcome::Failed => Some(false),
                Outcome::Skipped(_) | Outcome::Unverified => None,
            },
            state_root: self.state_root.map(|r| r.to_string()),
            logs_hash: self.logs_hash.map(|h| h.to_string()),
            gas_used: self.gas_used,
            output: self.output.as_ref().map(|o| o.to_string()),
            error: self.error.as_deref(),
        };
        serde_json::to_string(&line).expect("serializing plain strings and numbers cannot fail")
    }

    /// Human-readable failure description (several lines).
    pub fn write_failure(&self, out: &mut impl Write) -> std::io::Result<()> {
        write!(out, "FAIL {}", self.file)?;
        if let Some(name) = &self.name {
            write!(out, " :: {name}")?;
        }
        if let (Some(fork), Some(index)) = (&self.fork, self.index) {
            write!(out, " [{fork} #{index}]")?;
        }
        writeln!(out)?;
        if let Some(error) = &self.error {
            writeln!(out, "    error:      {error}")?;
        }
        if let Some((root, logs)) = self.expected {
            let got = |v: Option<B256>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
            writeln!(
                out,
                "    state root: expected {root}, got {}",
                got(self.state_root)
            )?;
            writeln!(
                out,
                "    logs hash:  expected {logs}, got {}",
                got(self.logs_hash)
            )?;
        }
        Ok(())
    }
}

#[derive(Serialize)]
struct JsonLine<'a> {
    file: &'a str,
    name: Option<&'a str>,
    fork: Option<&'a str>,
    index: Option<usize>,
    mode: &'a str,
    pass: Option<bool>,
    state_root: Option<String>,
    logs_hash: Option<String>,
    gas_used: Option<u64>,
    output: Option<String>,
    error: Option<&'a str>,
}

/// Totals over all cases.
#[derive(Debug, Default)]
pub struct Summary {
    /// Cases that matched their expectation.
    pub passed: usize,
    /// Cases that did not.
    pub failed: usize,
    /// Cases not compared: not run, or run without an expectation.
    pub skipped: usize,
    /// Breakdown of `skipped` by category.
    pub skip_reasons: BTreeMap<&'static str, usize>,
}

/// Skip category of cases that ran but had no expected post state.
pub const UNVERIFIED: &str = "no expected post state (ran, nothing to compare)";

impl Summary {
    /// Counts `report`.
    pub fn add(&mut self, report: &CaseReport) {
        match report.outcome {
            Outcome::Passed => self.passed += 1,
            Outcome::Failed => self.failed += 1,
            Outcome::Skipped(category) => {
                self.skipped += 1;
                *self.skip_reasons.entry(category).or_default() += 1;
            }
            Outcome::Unverified => {
                self.skipped += 1;
                *self.skip_reasons.entry(UNVERIFIED).or_default() += 1;
            }
        }
    }
}
