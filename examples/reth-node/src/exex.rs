//! The `kiln` ExEx: reth's canonical-chain notifications, turned into kiln's, handed to the
//! hot-code service; each answered with `ExExEvent::FinishedHeight` once the service is done
//! with it.
//!
//! Per-block usage is not carried in the notification: kiln's EVMs hand their usage tally to
//! the runtime under the identity of the block they executed (`BlockId`: number, timestamp,
//! beneficiary, prevrandao, gas limit, base fee), and the service matches those reports to the
//! committed blocks by that identity. So each block record here carries the `BlockId` computed
//! from the block's header through the node's own EVM configuration (the same `evm_env` the
//! executor used), and `usage: None`.

use crate::{evm::KilnEvmConfig, service::ServiceHandle};
use alloy_eips::BlockNumHash;
use futures::TryStreamExt;
use kiln_exex::{BlockRecord, Chain, Notification};
use kiln_runtime::BlockId;
use reth_ethereum::{
    evm::primitives::ConfigureEvm,
    exex::{ExExContext, ExExEvent, ExExNotification},
    node::api::{FullNodeComponents, NodeTypes},
    provider::Chain as RethChain,
    storage::{BytecodeReader, StateProviderFactory},
    EthPrimitives,
};
use std::sync::Arc;

/// Runs the ExEx until the node stops.
pub async fn run<Node>(mut ctx: ExExContext<Node>, service: Arc<ServiceHandle>) -> eyre::Result<()>
where
    Node: FullNodeComponents<Types: NodeTypes<Primitives = EthPrimitives>, Evm = KilnEvmConfig>,
{
    // Code the service has not seen deployed (contracts from before this run, genesis code) is
    // read from the latest state.
    let provider = ctx.provider().clone();
    service.code_source.set(move |hash| {
        let state = provider.latest().ok()?;
        let code = state.bytecode_by_hash(&hash).ok()??;
        Some(code.original_bytes())
    });
    kiln_exex::metrics::describe();
    tracing::info!(target: "kiln", head = ctx.head.number, "kiln ExEx started");

    let evm_config = ctx.evm_config().clone();
    while let Some(notification) = ctx.notifications.try_next().await? {
        let converted = convert(&evm_config, &notification);
        let (range, kind) = match &notification {
            ExExNotification::ChainCommitted { new } => (new.range(), "committed"),
            ExExNotification::ChainReorged { new, .. } => (new.range(), "reorged"),
            ExExNotification::ChainReverted { old } => (old.range(), "reverted"),
        };
        let (first, tip) = (*range.start(), *range.end());
        let Some(finished) = service.notify(converted).await else {
            tracing::warn!(target: "kiln", first, tip, kind, "kiln's service did not answer (stopped?)");
            continue;
        };
        let status = service.status.get();
        tracing::info!(
            target: "kiln",
            kind,
            blocks = %format_args!("{first}..={tip}"),
            finished = finished.number,
            native_gas_share = format!("{:.1}%", 100.0 * status.stats.native_share()),
            installed = status.installed_baseline + status.installed_optimised,
            queue = status.queue_depth,
            in_flight = status.in_flight,
            "kiln ExEx: chain notification processed"
        );
        ctx.events
            .send(ExExEvent::FinishedHeight(BlockNumHash::new(
                finished.number,
                finished.hash,
            )))?;
    }
    Ok(())
}

/// reth's notification in kiln's terms.
fn convert(evm_config: &KilnEvmConfig, notification: &ExExNotification) -> Notification {
    let chain = |c: &Arc<RethChain>| Arc::new(chain(evm_config, c));
    match notification {
        ExExNotification::ChainCommitted { new } => Notification::Committed { new: chain(new) },
        ExExNotification::ChainReorged { old, new } => Notification::Reorged {
            old: chain(old),
            new: chain(new),
        },
        ExExNotification::ChainReverted { old } => Notification::Reverted { old: chain(old) },
    }
}

/// A reth chain as kiln's block records, oldest first.
fn chain(evm_config: &KilnEvmConfig, chain: &RethChain) -> Chain {
    // The chain's execution outcome holds the code its blocks deployed, for the whole range;
    // the records hand it to the service with the first block (the service keeps code by hash).
    let mut deployed: Vec<_> = chain
        .execution_outcome()
        .bundle
        .contracts
        .iter()
        .filter(|(_, code)| !code.is_empty())
        .map(|(hash, code)| (*hash, code.original_bytes()))
        .collect();
    let blocks = chain
        .blocks_iter()
        .map(|block| {
            let header = block.header();
            // Infallible for Ethereum: the same environment the block executor used.
            let env = evm_config.evm_env(header).unwrap_or_else(|e| match e {});
            BlockRecord {
                number: header.number,
                hash: block.hash(),
                parent_hash: header.parent_hash,
                id: BlockId::of(&env.block_env),
                spec: env.cfg_env.spec,
                deployed: std::mem::take(&mut deployed),
                usage: None,
            }
        })
        .collect();
    Chain::new(blocks)
}
