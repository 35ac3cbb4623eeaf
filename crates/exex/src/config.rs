//! The service's settings, and the TOML file they are read from (`etc/kiln.toml` documents every
//! knob with its default). Knob names follow reth's `--jit.*` options where the meaning is the
//! same (`hot-threshold`, `worker-count`, `max-bytecode-len`); kiln's hot threshold is heat, that
//! is decayed gas, where reth's counts calls.

use kiln_compiler::CompileOptions;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// How the service decides what to compile.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// kiln's: gas burnt in canonical blocks, decayed per block, taken back when a block leaves
    /// the canonical chain; a quick tier once hot, the optimising tier once it stays hot.
    #[default]
    Heat,
    /// reth's `--jit` (revmc) policy, for comparison: a code is compiled once, at the
    /// optimising tier, after `lookup-threshold` lookups; a lookup is one EVM's use of the code
    /// (one usage report), from any execution, canonical or not, and nothing is taken back.
    Lookups,
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Heat => "heat",
            Self::Lookups => "lookups",
        })
    }
}

/// The service's settings.
///
/// In TOML the fields are kebab-case (`half-life-blocks`), the two thresholds are
/// `hot-threshold` and `optimise-threshold`, a missing knob keeps its default and an unknown one
/// is an error. `compile` is not read from the file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServiceConfig {
    /// How the service decides what to compile.
    pub policy: Policy,
    /// Under the `lookups` policy, the lookups after which a code is compiled (reth's
    /// `--jit.hot-threshold`).
    pub lookup_threshold: u64,
    /// Blocks after which a code's heat has halved.
    pub half_life_blocks: f64,
    /// Heat (decayed gas) at which a code gets its quick (baseline-tier) compilation.
    #[serde(rename = "hot-threshold")]
    pub hot_threshold_gas: u64,
    /// Heat at which it gets its optimising compilation: a code stays this hot only if it keeps
    /// running block after block.
    #[serde(rename = "optimise-threshold")]
    pub optimise_threshold_gas: u64,
    /// Compile worker threads.
    pub worker_count: usize,
    /// Jobs the compile queue holds; beyond it the coldest job is dropped.
    pub queue_capacity: usize,
    /// Larger code is never compiled.
    pub max_bytecode_len: usize,
    /// Recent blocks whose heat can still be taken back by a reorg or revert, and the age after
    /// which an EVM's usage report that no canonical block claimed is dropped.
    pub reorg_window: usize,
    /// Compile in helper processes (`kiln compile-helper`), so that a compiler crash, hang or
    /// memory blow-up costs one job, never the node; `false` compiles in this process.
    pub isolation: bool,
    /// A helper that takes longer than this on one job is killed (the job fails).
    pub helper_timeout_secs: u64,
    /// Each helper's address-space limit (RLIMIT_AS) in bytes; 0 for none.
    pub helper_address_space_limit: u64,
    /// Where compiled objects and the heat ranking are kept across restarts; none by default
    /// (a node points it into its data directory).
    pub cache_dir: Option<std::path::PathBuf>,
    /// Objects the cache keeps, in bytes; the least recently used go first.
    pub cache_max_bytes: u64,
    /// Compiled code the service keeps resident, in bytes of linked objects (reth's
    /// `--jit.code-cache-bytes`); beyond it the least recently used code is evicted.
    pub code_cache_bytes: u64,
    /// Code no canonical block used for this many seconds is evicted (reth's
    /// `--jit.idle-evict-duration`); 0 keeps it.
    pub idle_evict_secs: u64,
    /// New compiled code runs for canonical execution only after it matched the interpreter on
    /// this many real transactions, replayed in the background; 0 installs it unchecked.
    pub verify_runs: u32,
    /// Where a verification mismatch writes its reproducer (a state test); by default the
    /// `mismatches` folder of `cache-dir`, or of the system's temporary directory.
    pub reproducer_dir: Option<std::path::PathBuf>,
    /// Compile one function per code family: codes that differ only in PUSH immediates
    /// (immutables) share a function that reads those immediates from the running code, so a
    /// factory's thousandth pool costs a verification, not a compilation.
    pub families: bool,
    /// Compile options of the optimising tier (the quick tier uses the same at the baseline
    /// level).
    #[serde(skip)]
    pub compile: CompileOptions,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            policy: Policy::Heat,
            lookup_threshold: 8,
            half_life_blocks: 64.0,
            hot_threshold_gas: 200_000,
            optimise_threshold_gas: 2_000_000,
            worker_count: 1,
            queue_capacity: 1024,
            max_bytecode_len: 2 * 24 * 1024,
            reorg_window: 256,
            isolation: true,
            helper_timeout_secs: 60,
            helper_address_space_limit: 4 << 30,
            cache_dir: None,
            cache_max_bytes: 1 << 30,
            code_cache_bytes: 1 << 30,
            idle_evict_secs: 3600,
            verify_runs: 2,
            reproducer_dir: None,
            families: true,
            compile: CompileOptions {
                // The service chooses what to compile: code that cannot beat the interpreter
                // is left to it.
                skip_unprofitable: true,
                ..CompileOptions::default()
            },
        }
    }
}

/// Why a config file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading the config file: {0}")]
    Io(#[from] std::io::Error),
    /// The file is not valid TOML, has an unknown knob or a value of the wrong type.
    #[error("parsing the config file: {0}")]
    Toml(#[from] toml::de::Error),
    /// A knob has a value the service cannot use.
    #[error("invalid config: {0}")]
    Invalid(String),
}

impl ServiceConfig {
    /// Reads the settings from TOML text; knobs it does not set keep their defaults.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Reads the settings from a TOML file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        Self::from_toml_str(&std::fs::read_to_string(path)?)
    }

    /// Checks the values the service would otherwise silently clamp.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |what: &str| Err(ConfigError::Invalid(what.to_owned()));
        if !(self.half_life_blocks.is_finite() && self.half_life_blocks > 0.0) {
            return invalid("half-life-blocks must be a positive number");
        }
        if self.lookup_threshold == 0 {
            return invalid("lookup-threshold must be at least 1");
        }
        if self.worker_count == 0 {
            return invalid("worker-count must be at least 1");
        }
        if self.queue_capacity == 0 {
            return invalid("queue-capacity must be at least 1");
        }
        if self.reorg_window == 0 {
            return invalid("reorg-window must be at least 1");
        }
        if self.helper_timeout_secs == 0 {
            return invalid("helper-timeout-secs must be at least 1");
        }
        Ok(())
    }
}
