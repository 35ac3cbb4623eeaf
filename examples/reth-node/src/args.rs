//! kiln's settings on reth's command line (`reth node --kiln.*`).
//!
//! reth v2.5.1 already owns the `--jit.*` names (its own revmc backend, built only with reth's
//! `jit` feature), so kiln's knobs are `--kiln.*`. Where one of reth's `--jit.*` options means
//! the same thing as a kiln knob (`--jit.worker-count`, `--jit.max-bytecode-len`,
//! `--jit.code-cache-bytes`, `--jit.idle-evict-duration`), a value given to it is honoured too,
//! and the `--kiln.*` option wins over it.
//!
//! Order of precedence: `--kiln.*`, then reth's `--jit.*` (when set to something other than its
//! default), then `--kiln.config FILE`, then kiln's defaults (`ServiceConfig::default`).

use clap::Args;
use kiln_exex::{Policy, ServiceConfig};
use reth_ethereum::node::core::args::JitArgs;
use std::{path::PathBuf, time::Duration};

/// kiln's options.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "kiln")]
pub struct KilnArgs {
    /// Run every contract on revm's interpreter: no hot-code service, nothing compiled.
    #[arg(id = "kiln.disable", long = "kiln.disable", default_value_t = false)]
    pub disable: bool,

    /// A kiln TOML config file (the knobs of kiln's `etc/kiln.toml`); options given on the
    /// command line override it.
    #[arg(id = "kiln.config", long = "kiln.config", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// What decides compilation: `heat` (gas burnt in canonical blocks, decayed per block) or
    /// `lookups` (reth's revmc policy: compile after N uses).
    #[arg(id = "kiln.policy", long = "kiln.policy", value_name = "POLICY", value_parser = parse_policy)]
    pub policy: Option<Policy>,

    /// Heat (decayed gas) at which a code gets its quick, baseline-tier compilation.
    #[arg(
        id = "kiln.hot-threshold",
        long = "kiln.hot-threshold",
        value_name = "GAS"
    )]
    pub hot_threshold: Option<u64>,

    /// Heat at which a code gets its optimising compilation.
    #[arg(
        id = "kiln.optimise-threshold",
        long = "kiln.optimise-threshold",
        value_name = "GAS"
    )]
    pub optimise_threshold: Option<u64>,

    /// Under `--kiln.policy lookups`: uses after which a code is compiled.
    #[arg(
        id = "kiln.lookup-threshold",
        long = "kiln.lookup-threshold",
        value_name = "N"
    )]
    pub lookup_threshold: Option<u64>,

    /// Blocks after which a code's heat has halved.
    #[arg(
        id = "kiln.half-life-blocks",
        long = "kiln.half-life-blocks",
        value_name = "BLOCKS"
    )]
    pub half_life_blocks: Option<f64>,

    /// Compile worker threads (reth's `--jit.worker-count` is honoured too).
    #[arg(id = "kiln.worker-count", long = "kiln.worker-count", value_name = "N")]
    pub worker_count: Option<usize>,

    /// Larger code is never compiled (reth's `--jit.max-bytecode-len` is honoured too).
    #[arg(
        id = "kiln.max-bytecode-len",
        long = "kiln.max-bytecode-len",
        value_name = "BYTES"
    )]
    pub max_bytecode_len: Option<usize>,

    /// Compiled code kept resident, in bytes of linked objects (reth's `--jit.code-cache-bytes`
    /// is honoured too).
    #[arg(
        id = "kiln.code-cache-bytes",
        long = "kiln.code-cache-bytes",
        value_name = "BYTES"
    )]
    pub code_cache_bytes: Option<u64>,

    /// Code no canonical block used for this many seconds is evicted; 0 keeps it (reth's
    /// `--jit.idle-evict-duration` is honoured too).
    #[arg(
        id = "kiln.idle-evict-secs",
        long = "kiln.idle-evict-secs",
        value_name = "SECS"
    )]
    pub idle_evict_secs: Option<u64>,

    /// Real transactions new code must match the interpreter on before it serves; 0 installs
    /// it unchecked.
    #[arg(id = "kiln.verify-runs", long = "kiln.verify-runs", value_name = "N")]
    pub verify_runs: Option<u32>,

    /// Compile in helper processes (this binary's `compile-helper` mode), so a compiler crash
    /// costs one job, never the node.
    #[arg(id = "kiln.isolation", long = "kiln.isolation", value_name = "BOOL", action = clap::ArgAction::Set)]
    pub isolation: Option<bool>,

    /// Where compiled objects and the heat ranking are kept across restarts
    /// [default: `<datadir>/kiln`].
    #[arg(id = "kiln.cache-dir", long = "kiln.cache-dir", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Keep nothing across restarts.
    #[arg(
        id = "kiln.no-cache",
        long = "kiln.no-cache",
        default_value_t = false,
        conflicts_with = "kiln.cache-dir"
    )]
    pub no_cache: bool,

    /// How often the service installs finished compilations and starts queued ones when no
    /// block arrives, in milliseconds.
    #[arg(
        id = "kiln.poll-interval-ms",
        long = "kiln.poll-interval-ms",
        value_name = "MS",
        default_value_t = 50
    )]
    pub poll_interval_ms: u64,

    /// How often kiln logs a summary line (frames compiled/interpreted, native gas share,
    /// installed code), in seconds; 0 for never.
    #[arg(
        id = "kiln.log-interval-secs",
        long = "kiln.log-interval-secs",
        value_name = "SECS",
        default_value_t = 30
    )]
    pub log_interval_secs: u64,
}

fn parse_policy(s: &str) -> Result<Policy, String> {
    match s {
        "heat" => Ok(Policy::Heat),
        "lookups" => Ok(Policy::Lookups),
        other => Err(format!("unknown policy `{other}` (heat | lookups)")),
    }
}

impl KilnArgs {
    /// The poll interval.
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms.max(1))
    }

    /// The service's settings: kiln's defaults or the config file, then reth's `--jit.*` values
    /// that differ from reth's defaults, then `--kiln.*`. `default_cache_dir` is used unless
    /// `--kiln.cache-dir` or `--kiln.no-cache` says otherwise.
    pub fn service_config(
        &self,
        jit: &JitArgs,
        default_cache_dir: PathBuf,
    ) -> eyre::Result<ServiceConfig> {
        let mut config = match &self.config {
            Some(path) => {
                ServiceConfig::load(path).map_err(|e| eyre::eyre!("{}: {e}", path.display()))?
            }
            None => ServiceConfig::default(),
        };

        // reth's `--jit.*` where the meaning is the same, when the user set them.
        let reth_default = JitArgs::default();
        if let Some(n) = jit.worker_count {
            config.worker_count = n;
        }
        if jit.max_bytecode_len != reth_default.max_bytecode_len {
            // reth's 0 means "no limit".
            config.max_bytecode_len = match jit.max_bytecode_len {
                0 => usize::MAX,
                n => n,
            };
        }
        if jit.code_cache_bytes != reth_default.code_cache_bytes {
            config.code_cache_bytes = jit.code_cache_bytes as u64;
        }
        if jit.idle_evict_duration != reth_default.idle_evict_duration {
            config.idle_evict_secs = jit.idle_evict_duration.as_secs();
        }

        // kiln's own options.
        macro_rules! set {
            ($($arg:ident => $field:ident),* $(,)?) => {
                $(if let Some(v) = self.$arg { config.$field = v; })*
            };
        }
        set!(
            policy => policy,
            hot_threshold => hot_threshold_gas,
            optimise_threshold => optimise_threshold_gas,
            lookup_threshold => lookup_threshold,
            half_life_blocks => half_life_blocks,
            worker_count => worker_count,
            max_bytecode_len => max_bytecode_len,
            code_cache_bytes => code_cache_bytes,
            idle_evict_secs => idle_evict_secs,
            verify_runs => verify_runs,
            isolation => isolation,
        );
        config.cache_dir = if self.no_cache {
            None
        } else {
            // `--kiln.cache-dir`, then the config file's `cache-dir`, then the datadir's folder.
            Some(
                self.cache_dir
                    .clone()
                    .or(config.cache_dir.take())
                    .unwrap_or(default_cache_dir),
            )
        };
        config.validate()?;
        Ok(config)
    }
}
