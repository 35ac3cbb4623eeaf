//! The single place where a transaction is executed. Every mode goes through [`transact`].

use std::sync::Arc;

use kiln_evm::KilnEvm;
use kiln_runtime::{Runtime, RuntimeConfig};
use revm::{
    context::{BlockEnv, CfgEnv, TxEnv},
    context_interface::result::{EVMError, ExecutionResult},
    database::{EmptyDB, State},
    Context, Database, ExecuteCommitEvm, MainBuilder, MainContext,
};

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
    /// kiln's EVM with a runtime that compiles code (JIT or AOT) as its policy says.
    Compiled(Arc<Runtime>),
}

impl Backend {
    /// A backend running kiln's EVM on the runtime `config` builds; `None` is stock revm.
    pub fn new(config: Option<&RuntimeConfig>) -> Result<Self, kiln_runtime::RuntimeError> {
        Ok(match config {
            None => Self::Interpreter,
            Some(config) => Self::Compiled(config.build()?),
        })
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
