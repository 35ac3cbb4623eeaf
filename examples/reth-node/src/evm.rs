//! The node's EVM configuration: reth's `EthEvmConfig` over kiln's `KilnEvmFactory`, wrapped so
//! that reth's JIT controls reach kiln.
//!
//! `EthEvmConfig::jit_backend()` answers only for reth's own `RethEvmFactory` (it downcasts the
//! factory), so with kiln's factory reth's `reth_jit` RPC method and the pause reth takes while it
//! validates or builds a payload would do nothing. [`KilnEvmConfig`] delegates everything to the
//! inner `EthEvmConfig` and answers `jit_backend()` with [`KilnJit`], which drives kiln's
//! [`ServiceControl`].

use alloy_consensus::Header;
use alloy_eips::Decodable2718;
use alloy_evm::eth::{EthBlockExecutionCtx, EthBlockExecutorFactory};
use alloy_primitives::Bytes;
use kiln_evm::{KilnEvmFactory, Runtime};
use kiln_exex::ServiceControl;
use reth_ethereum::{
    chainspec::ChainSpec,
    evm::{
        primitives::{
            ConfigureEngineEvm, ConfigureEvm, EvmEnvFor, ExecutableTxIterator, ExecutionCtxFor,
            JitBackend, NextBlockEnvAttributes,
        },
        EthBlockAssembler, EthEvmConfig, RethReceiptBuilder,
    },
    node::{
        api::{FullNodeTypes, NodeTypes},
        builder::{components::ExecutorBuilder, BuilderContext},
    },
    primitives::{SealedBlock, SealedHeader, SignedTransaction as _},
    rpc::types::engine::ExecutionData,
    Block, EthPrimitives, TransactionSigned,
};
use std::{
    convert::Infallible,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

/// kiln's answer to reth's `JitBackend`: `reth_jit enable | disable | pause | unpause | clear`
/// and reth's payload pauses, turned into [`ServiceControl`] requests (carried out at the
/// service's next poll).
///
/// reth pauses the backend while it validates a payload and while it builds one, and these can
/// overlap (and `reth_jit pause` may come on top); pauses therefore nest: compilations resume
/// when every pause has been matched by a resume.
#[derive(Debug)]
pub struct KilnJit {
    control: ServiceControl,
    pauses: AtomicUsize,
}

impl KilnJit {
    /// Controls for the service behind `control`.
    pub fn new(control: ServiceControl) -> Self {
        Self {
            control,
            pauses: AtomicUsize::new(0),
        }
    }
}

impl JitBackend for KilnJit {
    fn set_enabled(&self, enabled: bool) -> Result<(), String> {
        self.control.set_enabled(enabled);
        tracing::info!(target: "kiln", enabled, "reth_jit: compiled code {}", if enabled { "enabled" } else { "disabled" });
        Ok(())
    }

    fn pause(&self) {
        if self.pauses.fetch_add(1, Ordering::AcqRel) == 0 {
            self.control.pause();
        }
        metrics::counter!("kiln.node.pauses").increment(1);
    }

    fn resume(&self) {
        let before = self
            .pauses
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_sub(1))
            })
            .unwrap_or(0);
        if before <= 1 {
            self.control.resume();
        }
    }

    fn clear(&self) {
        self.control.clear();
        tracing::info!(target: "kiln", "reth_jit: clearing kiln's compiled code and queue");
    }
}

/// reth's Ethereum EVM configuration with kiln's EVM factory, and kiln's JIT controls.
#[derive(Debug, Clone)]
pub struct KilnEvmConfig {
    inner: EthEvmConfig<ChainSpec, KilnEvmFactory>,
    jit: Option<Arc<KilnJit>>,
}

impl KilnEvmConfig {
    /// An EVM configuration whose EVMs run `runtime`'s compiled code; `jit` (if any) is what
    /// `jit_backend()` answers.
    pub fn new(
        chain_spec: Arc<ChainSpec>,
        runtime: Arc<Runtime>,
        jit: Option<Arc<KilnJit>>,
    ) -> Self {
        Self {
            inner: EthEvmConfig::new_with_evm_factory(chain_spec, KilnEvmFactory::new(runtime)),
            jit,
        }
    }
}

impl ConfigureEvm for KilnEvmConfig {
    type Primitives = EthPrimitives;
    type Error = Infallible;
    type NextBlockEnvCtx = NextBlockEnvAttributes;
    type BlockExecutorFactory =
        EthBlockExecutorFactory<RethReceiptBuilder, Arc<ChainSpec>, KilnEvmFactory>;
    type BlockAssembler = EthBlockAssembler<ChainSpec>;

    fn block_executor_factory(&self) -> &Self::BlockExecutorFactory {
        self.inner.block_executor_factory()
    }

    fn block_assembler(&self) -> &Self::BlockAssembler {
        self.inner.block_assembler()
    }

    fn evm_env(&self, header: &Header) -> Result<EvmEnvFor<Self>, Self::Error> {
        self.inner.evm_env(header)
    }

    fn next_evm_env(
        &self,
        parent: &Header,
        attributes: &NextBlockEnvAttributes,
    ) -> Result<EvmEnvFor<Self>, Self::Error> {
        self.inner.next_evm_env(parent, attributes)
    }

    fn context_for_block<'a>(
        &self,
        block: &'a SealedBlock<Block>,
    ) -> Result<EthBlockExecutionCtx<'a>, Self::Error> {
        self.inner.context_for_block(block)
    }

    fn context_for_next_block(
        &self,
        parent: &SealedHeader,
        attributes: NextBlockEnvAttributes,
    ) -> Result<EthBlockExecutionCtx<'_>, Self::Error> {
        self.inner.context_for_next_block(parent, attributes)
    }

    fn jit_backend(&self) -> Option<&dyn JitBackend> {
        self.jit.as_deref().map(|jit| jit as &dyn JitBackend)
    }
}

/// A payload transaction that could not be decoded or whose sender could not be recovered.
#[derive(Debug)]
pub struct PayloadTxError(String);

impl std::fmt::Display for PayloadTxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid payload transaction: {}", self.0)
    }
}

impl std::error::Error for PayloadTxError {}

impl ConfigureEngineEvm<ExecutionData> for KilnEvmConfig {
    fn evm_env_for_payload(&self, payload: &ExecutionData) -> Result<EvmEnvFor<Self>, Self::Error> {
        self.inner.evm_env_for_payload(payload)
    }

    fn context_for_payload<'a>(
        &self,
        payload: &'a ExecutionData,
    ) -> Result<ExecutionCtxFor<'a, Self>, Self::Error> {
        self.inner.context_for_payload(payload)
    }

    fn tx_iterator_for_payload(
        &self,
        payload: &ExecutionData,
    ) -> Result<impl ExecutableTxIterator<Self>, Self::Error> {
        // The inner config's iterator is typed for the inner config, so it is rebuilt here: the
        // raw transactions, and how to decode one and recover its sender.
        let transactions: Vec<Bytes> = payload.payload.transactions().clone();
        let recovery = self.inner.sender_recovery_cache.clone();
        let convert = move |raw: Bytes| {
            let tx = TransactionSigned::decode_2718_exact(raw.as_ref())
                .map_err(|e| PayloadTxError(e.to_string()))?;
            let signer = match &recovery {
                Some(cache) => cache.recover(&tx),
                None => tx.try_recover(),
            }
            .map_err(|e| PayloadTxError(e.to_string()))?;
            Ok::<_, PayloadTxError>(tx.with_signer(signer))
        };
        Ok((transactions, convert))
    }
}

/// Builds the node's [`KilnEvmConfig`] (what `EthereumNode::components().executor(...)` takes).
#[derive(Debug, Clone)]
pub struct KilnExecutorBuilder {
    runtime: Arc<Runtime>,
    jit: Option<Arc<KilnJit>>,
}

impl KilnExecutorBuilder {
    /// EVMs running `runtime`'s code, controlled through `jit`.
    pub fn new(runtime: Arc<Runtime>, jit: Option<Arc<KilnJit>>) -> Self {
        Self { runtime, jit }
    }
}

impl<Node> ExecutorBuilder<Node> for KilnExecutorBuilder
where
    Node: FullNodeTypes<Types: NodeTypes<ChainSpec = ChainSpec, Primitives = EthPrimitives>>,
{
    type EVM = KilnEvmConfig;

    async fn build_evm(self, ctx: &BuilderContext<Node>) -> eyre::Result<Self::EVM> {
        let mut config = KilnEvmConfig::new(ctx.chain_spec(), self.runtime, self.jit);
        if let Some(cache) = ctx.sender_recovery_cache() {
            config.inner = config.inner.with_sender_recovery_cache(cache.clone());
        }
        Ok(config)
    }
}
