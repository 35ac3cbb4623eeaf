//! When the execution path compiles code it has not seen: one module per policy, each over the
//! runtime's [`Store`](crate::Store).

pub(crate) mod first_sight;
pub mod profiled;
pub mod tiered;

/// When the execution path compiles code it has not seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompilePolicy {
    /// Compile synchronously the first time a code runs (tests, `kiln statetest`).
    OnFirstSight,
    /// Never compile on the execution path; only run what is already in the registry (filled in
    /// the background or ahead of time).
    LookupOnly,
    /// Interpret a code's first `runs` frame runs while recording what they execute, then
    /// compile only that (synchronously, on the execution path, as [`Self::OnFirstSight`]
    /// does): the blocks no profiled run entered hand the frame to the interpreter. Threads
    /// that find the same profile complete compile it each; the first result is kept. With
    /// `runs == 0`, or on the AOT backend (artifacts hold no profile), it compiles the whole code
    /// on first sight.
    AfterProfile {
        /// Frame runs to profile before compiling.
        runs: u64,
    },
    /// Compile the baseline tier ([`kiln_compiler::OptLevel::Baseline`], several times faster
    /// to compile, slower to run) synchronously the first time a code runs; once EVMs have
    /// looked the baseline code up `promote_after` times, compile it again at the options'
    /// level on a background worker, and replace the baseline code when that is done. An EVM
    /// looks a code up when it first runs it and again every few transactions while it holds
    /// baseline code, so a long-lived EVM counts too; frames running when the optimised code
    /// lands finish on the baseline code, and the EVM's next transaction runs the optimised
    /// code. With the options' level at baseline (or on AOT, whose artifacts are compiled once),
    /// it behaves as [`Self::OnFirstSight`].
    Tiered {
        /// Lookups of the baseline code before it is optimised.
        promote_after: u64,
    },
}

/// [`CompilePolicy::Tiered`]'s default `promote_after`: a code looked up eight times (by eight
/// EVMs, e.g. one per block, or by a long-lived EVM that kept running it) is worth its
/// optimising compilation.
pub const DEFAULT_PROMOTE_AFTER: u64 = 8;
