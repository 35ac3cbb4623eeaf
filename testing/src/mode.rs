//! [`Mode`]: how a tool executes transactions, and the one mapping from a mode to the runtime
//! that executes them.

use std::{fmt, path::PathBuf};

use kiln_compiler::{CompileOptions, OptLevel};
use kiln_runtime::{BackendKind, CompilePolicy, RuntimeConfig, DEFAULT_PROMOTE_AFTER};

/// An execution mode, as `--mode` / `--modes` of `kiln statetest`, `kiln bench` and `kiln fuzz`
/// name it. Each tool runs a subset ([`Mode::ensure_one_of`]); the order is the order `kiln bench`
/// reports modes in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum Mode {
    /// Stock revm (`build_mainnet`), without kiln's EVM: what kiln's dispatch costs.
    Revm,
    /// kiln's EVM with nothing compiled: the reference every compiled mode must agree with.
    /// (`kiln statetest` runs its reference on stock revm, as `revme statetest` does.)
    Interpreter,
    /// In-process JIT, each code compiled the first time it runs.
    Jit,
    /// In-process JIT of a pseudo-random half of each pre-state contract's blocks (`kiln fuzz`):
    /// the other blocks hand the frame to the interpreter, as the blocks a profile missed do in
    /// profile-guided compilation.
    JitPartial,
    /// In-process JIT where each pre-state contract runs a code family's function (`kiln
    /// fuzz`): one compiled from a sibling whose PUSH immediates differ, which reads them from
    /// the running code (`kiln_compiler::family`), as the hot-code service serves a factory's
    /// pools.
    JitFamily,
    /// In-process JIT compiled from a profile: `kiln fuzz` runs each case twice under
    /// [`CompilePolicy::AfterProfile`] (interpreted while its frames are recorded, then on code
    /// compiled from that); `kiln bench` compiles from a [`kiln_evm::CoverageInspector`] profile
    /// of the workload's own transactions.
    JitProfiled,
    /// In-process JIT at the baseline tier ([`OptLevel::Baseline`]): compiled several times
    /// faster than the default level, for code that runs slower.
    JitBaseline,
    /// Ahead-of-time compiled shared libraries in an artifact directory.
    Aot,
    /// kiln's default runtime (what `KilnEvmFactory::default()` builds): each code compiled at
    /// the baseline tier when it first runs, then at the options' level in the background once
    /// it keeps running ([`CompilePolicy::Tiered`]).
    Tiered,
}

impl Mode {
    /// Lower-case name, as accepted on the command line and printed in reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Revm => "revm",
            Self::Interpreter => "interpreter",
            Self::Jit => "jit",
            Self::JitPartial => "jit-partial",
            Self::JitFamily => "jit-family",
            Self::JitProfiled => "jit-profiled",
            Self::JitBaseline => "jit-baseline",
            Self::Aot => "aot",
            Self::Tiered => "tiered",
        }
    }

    /// Whether the mode runs compiled code (and so has compile figures).
    pub const fn compiles(self) -> bool {
        !matches!(self, Self::Revm | Self::Interpreter)
    }

    /// The runtime that executes this mode: the one place that maps a mode to a backend, a
    /// compile policy and compile options. `None` for [`Mode::Revm`], which runs stock revm
    /// and no kiln EVM. `artifact_dir` is used by [`Mode::Aot`] only (a temporary directory,
    /// removed with the runtime, when `None`).
    ///
    /// | mode           | backend     | policy                          | options           |
    /// |----------------|-------------|---------------------------------|-------------------|
    /// | `interpreter`  | interpreter | lookup only                     | as given          |
    /// | `jit`          | JIT         | on first sight                  | as given          |
    /// | `jit-partial`  | JIT         | on first sight                  | as given          |
    /// | `jit-family`   | JIT         | on first sight                  | as given          |
    /// | `jit-profiled` | JIT         | after profile (1 run)           | as given          |
    /// | `jit-baseline` | JIT         | on first sight                  | level `baseline`  |
    /// | `aot`          | AOT         | on first sight                  | as given          |
    /// | `tiered`       | JIT         | tiered (`DEFAULT_PROMOTE_AFTER`) | as given          |
    ///
    /// `jit-partial` and `jit-family` register their compilations themselves before a case runs
    /// (the policy compiles whatever they did not register). `kiln bench` compiles every code ahead of
    /// the timed runs and so runs the compiled modes other than `tiered` with
    /// [`CompilePolicy::LookupOnly`].
    pub fn runtime_config(
        self,
        options: CompileOptions,
        artifact_dir: Option<PathBuf>,
    ) -> Option<RuntimeConfig> {
        let (backend, policy) = match self {
            Self::Revm => return None,
            Self::Interpreter => (BackendKind::Interpreter, CompilePolicy::LookupOnly),
            Self::Jit | Self::JitPartial | Self::JitFamily | Self::JitBaseline => {
                (BackendKind::Jit, CompilePolicy::OnFirstSight)
            }
            Self::JitProfiled => (BackendKind::Jit, CompilePolicy::AfterProfile { runs: 1 }),
            Self::Aot => (BackendKind::Aot, CompilePolicy::OnFirstSight),
            Self::Tiered => (
                BackendKind::Jit,
                CompilePolicy::Tiered {
                    promote_after: DEFAULT_PROMOTE_AFTER,
                },
            ),
        };
        let options = match self {
            Self::JitBaseline => CompileOptions {
                opt_level: OptLevel::Baseline,
                ..options
            },
            _ => options,
        };
        Some(RuntimeConfig {
            backend,
            policy,
            options,
            artifact_dir: (backend == BackendKind::Aot)
                .then_some(artifact_dir)
                .flatten(),
        })
    }

    /// Fails unless the mode is one of `supported`, the modes `tool` runs, e.g. `statetest runs
    /// interpreter, jit, tiered, aot; not jit-partial`.
    pub fn ensure_one_of(self, tool: &str, supported: &[Self]) -> eyre::Result<()> {
        if supported.contains(&self) {
            return Ok(());
        }
        let names: Vec<&str> = supported.iter().map(|m| m.as_str()).collect();
        eyre::bail!("{tool} runs {}; not {self}", names.join(", "))
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn names_are_the_command_line_names() {
        for mode in Mode::value_variants() {
            let name = mode.to_possible_value().expect("no variant is skipped");
            assert_eq!(name.get_name(), mode.as_str());
            assert_eq!(Mode::from_str(mode.as_str(), false), Ok(*mode));
        }
    }

    #[test]
    fn each_mode_maps_to_its_runtime() {
        let options = CompileOptions::default();
        let dir = Some(PathBuf::from("/tmp/kiln-artifacts"));
        let config = |mode: Mode| mode.runtime_config(options, dir.clone());
        assert!(config(Mode::Revm).is_none());
        let interpreter = config(Mode::Interpreter).unwrap();
        assert_eq!(interpreter.backend, BackendKind::Interpreter);
        assert_eq!(interpreter.policy, CompilePolicy::LookupOnly);
        let jit = config(Mode::Jit).unwrap();
        assert_eq!(
            (jit.backend, jit.policy),
            (BackendKind::Jit, CompilePolicy::OnFirstSight)
        );
        assert_eq!(jit.artifact_dir, None);
        assert_eq!(
            config(Mode::JitProfiled).unwrap().policy,
            CompilePolicy::AfterProfile { runs: 1 }
        );
        assert_eq!(
            config(Mode::JitBaseline).unwrap().options.opt_level,
            OptLevel::Baseline
        );
        assert_eq!(
            config(Mode::Jit).unwrap().options.opt_level,
            options.opt_level
        );
        let aot = config(Mode::Aot).unwrap();
        assert_eq!(aot.backend, BackendKind::Aot);
        assert_eq!(aot.artifact_dir, dir);
        assert_eq!(
            config(Mode::Tiered).unwrap().policy,
            CompilePolicy::Tiered {
                promote_after: DEFAULT_PROMOTE_AFTER
            }
        );
        for mode in Mode::value_variants() {
            assert_eq!(
                mode.compiles(),
                config(*mode).is_some_and(|c| c.backend != BackendKind::Interpreter)
            );
        }
    }

    #[test]
    fn an_unsupported_mode_is_a_clear_error() {
        let supported = [Mode::Interpreter, Mode::Jit, Mode::Tiered, Mode::Aot];
        assert!(Mode::Jit.ensure_one_of("statetest", &supported).is_ok());
        let err = Mode::JitPartial
            .ensure_one_of("statetest", &supported)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "statetest runs interpreter, jit, tiered, aot; not jit-partial"
        );
    }
}
