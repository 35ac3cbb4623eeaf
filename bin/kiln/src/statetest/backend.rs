//! The single place where a transaction is executed. Every mode goes through [`transact`].

use std::{path::Path, sync::Arc};

use eyre::WrapErr;
use kiln_compiler::{aot::ArtifactDir, CompileOptions};
use kiln_evm::{CompilePolicy, KilnEvm, Runtime};
use revm::{
    context::{BlockEnv, CfgEnv, TxEnv},
    context_interface::result::{EVMError, ExecutionResult},
    database::{EmptyDB, State},
    Context, Database, ExecuteCommitEvm, MainBuilder, MainContext,
};

/// Execution mode selected on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Stock revm interpreter.
    Interpreter,
    /// kiln JIT-compiled bytecode.
    Jit,
    /// kiln ahead-of-time compiled bytecode.
    Aot,
}

impl Mode {
    /// Lower-case name, as accepted by `--mode` and printed in JSON reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Interpreter => "interpreter",
            Self::Jit => "jit",
            Self::Aot => "aot",
        }
    }
}

/// The state database every test case runs against.
pub type TestDb = State<EmptyDB>;

/// Error of a single transaction: validation errors (`Transaction`, `Header`) mean the
/// transaction was rejected, anything else is a failure of the executor itself.
pub type TxError = EVMError<<TestDb as Database>::Error>;

/// What executes transactions. Shared by all worker threads, hence `Sync`.
#[derive(Debug)]
pub enum Backend {
    /// Stock revm interpreter: the reference every other mode is compared with.
    Interpreter,
    /// kiln's EVM with a runtime that compiles each code (JIT or AOT) the first time it runs.
    Compiled(Arc<Runtime>),
}

impl Backend {
    /// Sets up the backend for `mode`. AOT artifacts go to `aot_dir`, or to a fresh temporary
    /// directory (kept in `keep_alive`) when none is given.
    pub fn new(
        mode: Mode,
        opts: CompileOptions,
        aot_dir: Option<&Path>,
        tiered: bool,
        keep_alive: &mut Option<tempfile::TempDir>,
    ) -> eyre::Result<Self> {
        let backend = match mode {
            Mode::Interpreter => return Ok(Self::Interpreter),
            Mode::Jit => kiln_evm::Backend::Jit,
            Mode::Aot => {
                let dir = match aot_dir {
                    Some(d) => d.to_path_buf(),
                    None => {
                        let t = tempfile::Builder::new().prefix("kiln-aot-").tempdir()?;
                        let p = t.path().join("artifacts");
                        *keep_alive = Some(t);
                        p
                    }
                };
                kiln_evm::Backend::Aot(
                    ArtifactDir::open(&dir)
                        .wrap_err_with(|| format!("AOT directory {}", dir.display()))?,
                )
            }
        };
        let policy = if tiered {
            CompilePolicy::Tiered {
                promote_after: kiln_evm::DEFAULT_PROMOTE_AFTER,
            }
        } else {
            CompilePolicy::OnFirstSight
        };
        Ok(Self::Compiled(Arc::new(Runtime::new(
            backend, policy, opts,
        ))))
    }

    /// The compiled-code runtime, if this backend has one.
    pub fn runtime(&self) -> Option<&Arc<Runtime>> {
        match self {
            Self::Interpreter => None,
            Self::Compiled(rt) => Some(rt),
        }
    }
}

/// Executes `tx` on top of `state` and commits its changes into `state`.
///
/// Rejected transactions leave `state` untouched.
pub fn transact(
    backend: &Backend,
    state: &mut TestDb,
    cfg: &CfgEnv,
    block: &BlockEnv,
    tx: TxEnv,
) -> Result<ExecutionResult, TxError> {
    let ctx = Context::mainnet()
        .with_cfg(cfg.clone())
        .with_block(block.clone())
        .with_db(state);
    match backend {
        Backend::Interpreter => ctx.build_mainnet().transact_commit(tx),
        Backend::Compiled(rt) => KilnEvm::new(ctx, rt.clone()).transact_commit(tx),
    }
}

/// `true` when the error means "the transaction is invalid" rather than "the executor broke".
pub const fn is_validation_error(err: &TxError) -> bool {
    matches!(err, EVMError::Transaction(_) | EVMError::Header(_))
}
