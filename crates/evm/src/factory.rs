//! [`KilnEvmFactory`]: the [`alloy_evm::EvmFactory`] that reth's
//! `EthEvmConfig::new_with_evm_factory` takes.

use crate::evm::KilnEvm;
use alloy_evm::{precompiles::PrecompilesMap, Database, EvmEnv, EvmFactory};
use alloy_primitives::{Address, Bytes};
use kiln_runtime::{Capture, Runtime};
use revm::{
    context::{BlockEnv, CfgEnv, Context, TxEnv},
    context_interface::result::{EVMError, HaltReason, ResultAndState},
    handler::instructions::EthInstructions,
    inspector::NoOpInspector,
    interpreter::interpreter::EthInterpreter,
    precompile::{PrecompileSpecId, Precompiles},
    primitives::hardfork::SpecId,
    ExecuteEvm, InspectEvm, Inspector, MainContext, SystemCallEvm,
};
use std::sync::Arc;

/// The context type of kiln's EVMs (the same as alloy-evm's `EthEvmContext`).
pub type KilnEvmContext<DB> = Context<BlockEnv, TxEnv, CfgEnv, DB>;

/// Creates [`KilnAlloyEvm`]s that share one [`Runtime`] (registry + compile policy).
#[derive(Clone, Debug)]
pub struct KilnEvmFactory {
    runtime: Arc<Runtime>,
}

impl KilnEvmFactory {
    /// A factory whose EVMs use `runtime`.
    pub fn new(runtime: Arc<Runtime>) -> Self {
        Self { runtime }
    }

    /// The shared runtime.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }
}

impl Default for KilnEvmFactory {
    /// A factory with a tiered JIT runtime ([`Runtime::tiered`]): baseline code on first
    /// sight, optimised in the background once it keeps running.
    fn default() -> Self {
        Self::new(Runtime::tiered())
    }
}

/// An [`alloy_evm::Evm`] backed by [`KilnEvm`]. With the inspector enabled, transactions run on
/// revm's inspector path (the interpreter), since compiled code has no per-step hook.
pub struct KilnAlloyEvm<DB: Database, I> {
    evm: KilnEvm<KilnEvmContext<DB>, I, PrecompilesMap>,
    inspect: bool,
}

impl<DB: Database, I> std::fmt::Debug for KilnAlloyEvm<DB, I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KilnAlloyEvm")
            .field("inspect", &self.inspect)
            .finish_non_exhaustive()
    }
}

impl<DB: Database, I> KilnAlloyEvm<DB, I> {
    /// The wrapped kiln EVM.
    pub fn inner(&self) -> &KilnEvm<KilnEvmContext<DB>, I, PrecompilesMap> {
        &self.evm
    }

    /// The wrapped kiln EVM, mutably.
    pub fn inner_mut(&mut self) -> &mut KilnEvm<KilnEvmContext<DB>, I, PrecompilesMap> {
        &mut self.evm
    }
}

impl<DB, I> alloy_evm::Evm for KilnAlloyEvm<DB, I>
where
    DB: Database,
    I: Inspector<KilnEvmContext<DB>>,
{
    type DB = DB;
    type Tx = TxEnv;
    type Error = EVMError<DB::Error>;
    type HaltReason = HaltReason;
    type Spec = SpecId;
    type BlockEnv = BlockEnv;
    type Precompiles = PrecompilesMap;
    type Inspector = I;

    fn block(&self) -> &BlockEnv {
        &self.evm.inner.ctx.block
    }

    fn cfg_env(&self) -> &CfgEnv<SpecId> {
        &self.evm.inner.ctx.cfg
    }

    fn chain_id(&self) -> u64 {
        self.evm.inner.ctx.cfg.chain_id
    }

    fn transact_raw(&mut self, tx: TxEnv) -> Result<ResultAndState<HaltReason>, Self::Error> {
        if self.inspect {
            return self.evm.inner.inspect_tx(tx);
        }
        if !self.evm.runtime().captures().wanted() {
            return self.evm.transact(tx);
        }
        // Some code waits for verification: keep what a replay of this transaction needs, in
        // case its frames run that code.
        let recorded = tx.clone();
        let executed = self.evm.transact(tx)?;
        let candidates = self.evm.take_candidates();
        if !candidates.is_empty() {
            let ctx = &self.evm.inner.ctx;
            self.evm.runtime().captures().push(Capture {
                block: ctx.block.clone(),
                cfg: ctx.cfg.clone(),
                tx: recorded,
                candidates,
                result: executed.result.clone(),
                state: executed.state.clone(),
            });
        }
        Ok(executed)
    }

    fn transact_system_call(
        &mut self,
        caller: Address,
        contract: Address,
        data: Bytes,
    ) -> Result<ResultAndState<HaltReason>, Self::Error> {
        // System calls (EIP-2935/4788/7002/7251) run once per block on the interpreter.
        self.evm
            .inner
            .system_call_with_caller(caller, contract, data)
    }

    fn finish(self) -> (DB, EvmEnv<SpecId>) {
        let Context {
            block: block_env,
            cfg: cfg_env,
            journaled_state,
            ..
        } = self.evm.inner.ctx;
        (journaled_state.database, EvmEnv { block_env, cfg_env })
    }

    fn set_inspector_enabled(&mut self, enabled: bool) {
        self.inspect = enabled;
    }

    fn components(&self) -> (&DB, &I, &PrecompilesMap) {
        let inner = &self.evm.inner;
        (
            &inner.ctx.journaled_state.database,
            &inner.inspector,
            &inner.precompiles,
        )
    }

    fn components_mut(&mut self) -> (&mut DB, &mut I, &mut PrecompilesMap) {
        let inner = &mut self.evm.inner;
        (
            &mut inner.ctx.journaled_state.database,
            &mut inner.inspector,
            &mut inner.precompiles,
        )
    }
}

impl KilnEvmFactory {
    fn build<DB: Database, I>(
        &self,
        db: DB,
        env: EvmEnv,
        inspector: I,
        inspect: bool,
    ) -> KilnAlloyEvm<DB, I> {
        let spec = env.cfg_env.spec;
        let precompiles =
            PrecompilesMap::from_static(Precompiles::new(PrecompileSpecId::from_spec_id(spec)));
        let ctx = Context::mainnet()
            .with_block(env.block_env)
            .with_cfg(env.cfg_env)
            .with_db(db);
        let inner = revm::context::Evm::new_with_inspector(
            ctx,
            inspector,
            EthInstructions::<EthInterpreter, KilnEvmContext<DB>>::new_mainnet_with_spec(spec),
            precompiles,
        );
        KilnAlloyEvm {
            evm: KilnEvm::from_revm(inner, self.runtime.clone()),
            inspect,
        }
    }
}

impl EvmFactory for KilnEvmFactory {
    type Evm<DB: Database, I: Inspector<KilnEvmContext<DB>>> = KilnAlloyEvm<DB, I>;
    type Context<DB: Database> = KilnEvmContext<DB>;
    type Tx = TxEnv;
    type Error<DBError: revm::context::DBErrorMarker> = EVMError<DBError>;
    type HaltReason = HaltReason;
    type Spec = SpecId;
    type BlockEnv = BlockEnv;
    type Precompiles = PrecompilesMap;

    fn create_evm<DB: Database>(&self, db: DB, input: EvmEnv) -> Self::Evm<DB, NoOpInspector> {
        self.build(db, input, NoOpInspector {}, false)
    }

    fn create_evm_with_inspector<DB: Database, I: Inspector<Self::Context<DB>>>(
        &self,
        db: DB,
        input: EvmEnv,
        inspector: I,
    ) -> Self::Evm<DB, I> {
        self.build(db, input, inspector, true)
    }
}
