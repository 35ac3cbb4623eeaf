//! [`KilnEvm`]: revm's EVM with kiln's frame dispatch.

use crate::dispatch::{run_frame, FrameCache};
use kiln_runtime::{BlockId, Runtime};
use revm::{
    context::{Cfg, ContextSetters, ContextTr, Evm, FrameStack, JournalTr},
    context_interface::{
        result::{EVMError, ExecResultAndState, ExecutionResult, HaltReason, InvalidTransaction},
        Database,
    },
    handler::{
        evm::{ContextDbError, FrameInitResult, FrameTr},
        instructions::{EthInstructions, InstructionProvider},
        EthFrame, EthPrecompiles, EvmTr, FrameInitOrResult, Handler, MainnetHandler,
        PrecompileProvider,
    },
    interpreter::{interpreter::EthInterpreter, Host, InterpreterResult},
    state::EvmState,
    DatabaseCommit, ExecuteCommitEvm, ExecuteEvm,
};
use std::sync::Arc;

/// The revm EVM type that kiln wraps.
pub type RevmEvm<CTX, INSP, P> =
    Evm<CTX, INSP, EthInstructions<EthInterpreter, CTX>, P, EthFrame<EthInterpreter>>;

/// revm's mainnet EVM with one change: each frame runs compiled code when the [`Runtime`] has it
/// for the frame's code hash and spec. Frame creation, precompiles, journaling,
/// refunds and every transaction-level rule stay revm's.
///
/// Inspection (tracing) goes through revm's inspector path on [`KilnEvm::inner`], which always
/// uses the interpreter: compiled code has no per-step hook.
pub struct KilnEvm<CTX, INSP = (), P = EthPrecompiles> {
    /// The wrapped revm EVM.
    pub inner: RevmEvm<CTX, INSP, P>,
    /// The compiled-code runtime (registry and policy) and the functions this EVM has already
    /// found in it.
    cache: FrameCache,
}

impl<CTX: std::fmt::Debug, INSP, P> std::fmt::Debug for KilnEvm<CTX, INSP, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KilnEvm")
            .field("ctx", &self.inner.ctx)
            .finish_non_exhaustive()
    }
}

impl<CTX: ContextTr> KilnEvm<CTX, (), EthPrecompiles> {
    /// Builds an EVM over `ctx` with mainnet instructions and precompiles for the context's spec.
    pub fn new(ctx: CTX, runtime: Arc<Runtime>) -> Self
    where
        CTX: Host,
    {
        let spec = ctx.cfg().spec().into();
        let instructions = EthInstructions::new_mainnet_with_spec(spec);
        let precompiles = EthPrecompiles::new(spec);
        Self {
            inner: Evm::new(ctx, instructions, precompiles),
            cache: FrameCache::new(runtime),
        }
    }
}

impl<CTX, INSP, P> KilnEvm<CTX, INSP, P> {
    /// The compiled-code runtime this EVM dispatches to.
    pub fn runtime(&self) -> &Arc<Runtime> {
        self.cache.runtime()
    }

    /// Adds this EVM's frame counters to [`Runtime::stats`] now. They are otherwise added in
    /// batches and when the EVM is dropped (see [`kiln_runtime::RuntimeStats`]).
    pub fn flush_stats(&mut self) {
        self.cache.flush_stats();
    }

    /// The codes waiting for verification that the last transaction ran; empties the list.
    pub fn take_candidates(&mut self) -> Vec<kiln_runtime::CodeKey> {
        self.cache.take_candidates()
    }

    /// Wraps an existing revm EVM.
    pub fn from_revm(inner: RevmEvm<CTX, INSP, P>, runtime: Arc<Runtime>) -> Self {
        Self {
            inner,
            cache: FrameCache::new(runtime),
        }
    }
}

impl<CTX, INSP, P> EvmTr for KilnEvm<CTX, INSP, P>
where
    CTX: ContextTr + Host,
    P: PrecompileProvider<CTX, Output = InterpreterResult>,
{
    type Context = CTX;
    type Instructions = EthInstructions<EthInterpreter, CTX>;
    type Precompiles = P;
    type Frame = EthFrame<EthInterpreter>;

    fn all(&self) -> (&CTX, &Self::Instructions, &P, &FrameStack<Self::Frame>) {
        self.inner.all()
    }

    fn all_mut(
        &mut self,
    ) -> (
        &mut CTX,
        &mut Self::Instructions,
        &mut P,
        &mut FrameStack<Self::Frame>,
    ) {
        self.inner.all_mut()
    }

    fn frame_init(
        &mut self,
        frame_input: <Self::Frame as FrameTr>::FrameInit,
    ) -> Result<FrameInitResult<'_, Self::Frame>, ContextDbError<CTX>> {
        self.inner.frame_init(frame_input)
    }

    fn frame_run(&mut self) -> Result<FrameInitOrResult<Self::Frame>, ContextDbError<CTX>> {
        if !self.cache.runtime().is_enabled() {
            return self.inner.frame_run();
        }
        let Evm {
            ctx,
            instruction,
            frame_stack,
            ..
        } = &mut self.inner;
        let depth = frame_stack.index().unwrap_or(0);
        let frame = frame_stack.get();
        let action = run_frame(
            &mut self.cache,
            depth,
            &mut frame.interpreter,
            ctx,
            instruction.instruction_table(),
            instruction.gas_table(),
        );
        frame.process_next_action(ctx, action).inspect(|i| {
            if i.is_result() {
                frame.set_finished(true);
            }
        })
    }

    fn frame_return_result(
        &mut self,
        result: <Self::Frame as FrameTr>::FrameResult,
    ) -> Result<Option<<Self::Frame as FrameTr>::FrameResult>, ContextDbError<CTX>> {
        self.inner.frame_return_result(result)
    }
}

type KilnHandler<CTX, INSP, P> = MainnetHandler<
    KilnEvm<CTX, INSP, P>,
    EVMError<<<CTX as ContextTr>::Db as Database>::Error, InvalidTransaction>,
    EthFrame<EthInterpreter>,
>;

impl<CTX, INSP, P> ExecuteEvm for KilnEvm<CTX, INSP, P>
where
    CTX: ContextTr<Journal: JournalTr<State = EvmState>> + ContextSetters + Host,
    P: PrecompileProvider<CTX, Output = InterpreterResult>,
{
    type ExecutionResult = ExecutionResult<HaltReason>;
    type State = EvmState;
    type Error = EVMError<<CTX::Db as Database>::Error, InvalidTransaction>;
    type Tx = <CTX as ContextTr>::Tx;
    type Block = <CTX as ContextTr>::Block;

    fn set_block(&mut self, block: Self::Block) {
        self.inner.ctx.set_block(block);
    }

    fn transact_one(&mut self, tx: Self::Tx) -> Result<Self::ExecutionResult, Self::Error> {
        self.inner.ctx.set_tx(tx);
        let ctx = &self.inner.ctx;
        self.cache.begin_transaction(|| BlockId::of(ctx.block()));
        let result = KilnHandler::<CTX, INSP, P>::default().run(self);
        self.cache.end_transaction();
        result
    }

    fn finalize(&mut self) -> Self::State {
        self.inner.ctx.journal_mut().finalize()
    }

    fn replay(
        &mut self,
    ) -> Result<ExecResultAndState<ExecutionResult<HaltReason>, EvmState>, Self::Error> {
        let ctx = &self.inner.ctx;
        self.cache.begin_transaction(|| BlockId::of(ctx.block()));
        let result = KilnHandler::<CTX, INSP, P>::default().run(self);
        self.cache.end_transaction();
        let state = self.finalize();
        result.map(|r| ExecResultAndState::new(r, state))
    }
}

impl<CTX, INSP, P> ExecuteCommitEvm for KilnEvm<CTX, INSP, P>
where
    CTX:
        ContextTr<Journal: JournalTr<State = EvmState>, Db: DatabaseCommit> + ContextSetters + Host,
    P: PrecompileProvider<CTX, Output = InterpreterResult>,
{
    fn commit(&mut self, state: Self::State) {
        self.inner.ctx.db_mut().commit(state);
    }
}
