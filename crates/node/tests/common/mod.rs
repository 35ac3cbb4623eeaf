//! A small dev chain for tests: a geth-format genesis with a funded key and two contracts, and
//! blocks built on it that call them.

#![allow(dead_code, unreachable_pub)]

use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy_genesis::{ChainConfig, Genesis, GenesisAccount};
use alloy_primitives::{address, Address, Bytes, TxKind, B256, U256};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use kiln_evm::KilnEvmFactory;
use kiln_node::{
    build_block,
    chain::BlockTree,
    execute::{executor_factory_for, KilnBlockExecutorFactory},
    genesis::geth_genesis_tree,
    Built, CancunSpec, Payload,
};
use kiln_runtime::Runtime;
use std::collections::BTreeMap;

pub const CHAIN_ID: u64 = 1337;
pub const A: Address = address!("00000000000000000000000000000000000000aa");
pub const B: Address = address!("00000000000000000000000000000000000000bb");

/// Loops `n` times, then adds one to slot 0: code worth heating, distinct per `n`.
pub fn counter_code(n: u8) -> Bytes {
    Bytes::from(vec![
        0x60, n, 0x5b, 0x60, 0x01, 0x90, 0x03, 0x80, 0x60, 0x02, 0x57, 0x50, 0x60, 0x00, 0x54,
        0x60, 0x01, 0x01, 0x60, 0x00, 0x55, 0x00,
    ])
}

pub fn signer() -> PrivateKeySigner {
    PrivateKeySigner::from_bytes(&B256::repeat_byte(0x11)).expect("a valid key")
}

pub fn genesis() -> Genesis {
    let config = ChainConfig {
        chain_id: CHAIN_ID,
        homestead_block: Some(0),
        eip150_block: Some(0),
        eip155_block: Some(0),
        eip158_block: Some(0),
        byzantium_block: Some(0),
        constantinople_block: Some(0),
        petersburg_block: Some(0),
        istanbul_block: Some(0),
        berlin_block: Some(0),
        london_block: Some(0),
        terminal_total_difficulty: Some(U256::ZERO),
        terminal_total_difficulty_passed: true,
        shanghai_time: Some(0),
        cancun_time: Some(0),
        ..Default::default()
    };
    let mut alloc = BTreeMap::new();
    alloc.insert(
        signer().address(),
        GenesisAccount::default().with_balance(U256::from(10u64).pow(U256::from(20))),
    );
    alloc.insert(
        A,
        GenesisAccount::default().with_code(Some(counter_code(40))),
    );
    alloc.insert(
        B,
        GenesisAccount::default().with_code(Some(counter_code(41))),
    );
    Genesis {
        config,
        gas_limit: 30_000_000,
        base_fee_per_gas: Some(1_000_000_000),
        timestamp: 1_700_000_000,
        alloc,
        ..Default::default()
    }
}

/// Builds blocks with the interpreter on a tree of its own.
pub struct DevChain {
    pub factory: KilnBlockExecutorFactory,
    pub tree: BlockTree,
    nonce: u64,
}

impl DevChain {
    pub fn new(genesis: &Genesis) -> Self {
        let spec = CancunSpec::from_genesis(&genesis.config).expect("a Cancun genesis");
        let factory = executor_factory_for(spec, KilnEvmFactory::new(Runtime::interpreter()));
        let tree = geth_genesis_tree(&factory, genesis).expect("genesis");
        Self {
            factory,
            tree,
            nonce: 0,
        }
    }

    pub fn genesis_hash(&self) -> B256 {
        self.tree.head().hash
    }

    /// A call of `to`, signed with the next nonce.
    pub fn call(&mut self, to: Address) -> TxEnvelope {
        let tx = TxEip1559 {
            chain_id: CHAIN_ID,
            nonce: self.nonce,
            gas_limit: 100_000,
            max_fee_per_gas: 100_000_000_000,
            max_priority_fee_per_gas: 1,
            to: TxKind::Call(to),
            ..Default::default()
        };
        self.nonce += 1;
        let signature = signer()
            .sign_hash_sync(&tx.signature_hash())
            .expect("signing");
        tx.into_signed(signature).into()
    }

    /// A block on `parent` calling each of `calls` once; `salt` tells siblings apart.
    pub fn block(&mut self, parent: B256, calls: &[Address], salt: u8) -> Built {
        let transactions = calls.iter().map(|to| self.call(*to)).collect();
        let number = self.tree.get(&parent).expect("parent").header.number;
        build_block(
            &self.factory,
            &mut self.tree,
            Payload {
                parent,
                timestamp: 1_700_000_000 + 12 * (number + 1),
                beneficiary: Address::with_last_byte(salt),
                prevrandao: B256::with_last_byte(salt),
                parent_beacon_block_root: B256::with_last_byte(salt),
                extra_data: Bytes::new(),
                transactions,
            },
        )
        .expect("a buildable block")
    }

    /// Sets the next nonce (a sibling block reuses its parent's nonces).
    pub fn set_nonce(&mut self, nonce: u64) {
        self.nonce = nonce;
    }
}
