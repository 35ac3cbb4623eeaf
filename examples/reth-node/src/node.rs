//! `KilnNode`: reth's Ethereum node types with kiln's executor builder.
//!
//! Having its own node type is what lets reth's other commands (`import`, `re-execute`,
//! `stage run`, ...) run kiln's EVM too: reth's CLI takes the EVM configuration those commands
//! use from the node type's components.

use crate::evm::KilnExecutorBuilder;
use reth_ethereum::{
    chainspec::ChainSpec,
    engine::local::LocalPayloadAttributesBuilder,
    node::{
        api::{
            FullNodeComponents, FullNodeTypes, NodeTypes, PayloadAttributesBuilder, PayloadTypes,
        },
        builder::{
            components::BasicPayloadServiceBuilder, components::ComponentsBuilder, DebugNode, Node,
            NodeAdapter,
        },
        node::{
            EthereumAddOns, EthereumConsensusBuilder, EthereumEngineValidatorBuilder,
            EthereumEthApiBuilder, EthereumNetworkBuilder, EthereumPayloadBuilder,
            EthereumPoolBuilder,
        },
        EthEngineTypes, EthereumNode,
    },
    provider::EthStorage,
    rpc::eth::primitives::Block as RpcBlock,
    Block, EthPrimitives,
};
use std::sync::Arc;

/// reth's Ethereum node whose EVMs are kiln's.
#[derive(Debug, Clone)]
pub struct KilnNode {
    executor: KilnExecutorBuilder,
}

impl KilnNode {
    /// A node whose EVM configuration `executor` builds.
    pub fn new(executor: KilnExecutorBuilder) -> Self {
        Self { executor }
    }
}

impl NodeTypes for KilnNode {
    type Primitives = EthPrimitives;
    type ChainSpec = ChainSpec;
    type Storage = EthStorage;
    type Payload = EthEngineTypes;
}

impl<N> Node<N> for KilnNode
where
    N: FullNodeTypes<Types = Self>,
{
    type ComponentsBuilder = ComponentsBuilder<
        N,
        EthereumPoolBuilder,
        BasicPayloadServiceBuilder<EthereumPayloadBuilder>,
        EthereumNetworkBuilder,
        KilnExecutorBuilder,
        EthereumConsensusBuilder,
    >;

    type AddOns =
        EthereumAddOns<NodeAdapter<N>, EthereumEthApiBuilder, EthereumEngineValidatorBuilder>;

    fn components_builder(&self) -> Self::ComponentsBuilder {
        EthereumNode::components().executor(self.executor.clone())
    }

    fn add_ons(&self) -> Self::AddOns {
        EthereumAddOns::default()
    }
}

/// What `--dev` and reth's debug options need (local payload attributes, blocks fetched over RPC).
impl<N> DebugNode<N> for KilnNode
where
    N: FullNodeComponents<Types = Self>,
{
    type RpcBlock = RpcBlock;

    fn rpc_to_primitive_block(rpc_block: Self::RpcBlock) -> Block {
        rpc_block.into_consensus().convert_transactions()
    }

    fn local_payload_attributes_builder(
        chain_spec: &ChainSpec,
    ) -> impl PayloadAttributesBuilder<<EthEngineTypes as PayloadTypes>::PayloadAttributes> {
        LocalPayloadAttributesBuilder::new(Arc::new(chain_spec.clone()))
    }
}
