//! A small chain for the stateless tests, built with kiln-node's block builder: storage written
//! and cleared (storage-trie deletions that collapse branches), empty genesis accounts touched
//! (account-trie deletions), new accounts, a contract created, and BLOCKHASH read every block.

#![allow(dead_code, unreachable_pub)]

use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy_genesis::{Genesis, GenesisAccount};
use alloy_primitives::{Address, Bytes, TxKind, B256, U256};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use kiln_evm::KilnEvmFactory;
use kiln_node::{
    build_block,
    chain::BlockTree,
    decode::EthBlock,
    execute::{executor_factory_for, KilnBlockExecutorFactory},
    genesis::geth_genesis_tree,
    CancunSpec, Payload,
};
use kiln_runtime::Runtime;
use kiln_stateless::witness::cancun_config;
use std::collections::BTreeMap;

pub const CHAIN_ID: u64 = 1337;

/// Stores BLOCKHASH(NUMBER - 2) in slot 1, then calldata word 1 in the slot calldata word 0
/// names.
pub const STORE_CODE: [u8; 18] = [
    0x43, 0x60, 0x02, 0x90, 0x03, 0x40, 0x60, 0x01, 0x55, 0x60, 0x00, 0x35, 0x60, 0x20, 0x35, 0x90,
    0x55, 0x00,
];

/// Loops `n` times, then adds one to slot 0.
pub fn counter_code(n: u8) -> Vec<u8> {
    vec![
        0x60, n, 0x5b, 0x60, 0x01, 0x90, 0x03, 0x80, 0x60, 0x02, 0x57, 0x50, 0x60, 0x00, 0x54,
        0x60, 0x01, 0x01, 0x60, 0x00, 0x55, 0x00,
    ]
}

pub fn store() -> Address {
    Address::with_last_byte(0xc0)
}

pub fn counter() -> Address {
    Address::with_last_byte(0xc1)
}

/// Empty accounts in the genesis state: touching one deletes it.
pub fn empty(i: u8) -> Address {
    Address::repeat_byte(0xe0 + i)
}

/// Funded accounts that fill the account trie.
pub fn filler(i: u8) -> Address {
    Address::from_word(B256::with_last_byte(i))
}

pub fn signer() -> PrivateKeySigner {
    PrivateKeySigner::from_bytes(&B256::repeat_byte(0x11)).expect("a valid key")
}

pub fn genesis() -> Genesis {
    let mut alloc = BTreeMap::new();
    alloc.insert(
        signer().address(),
        GenesisAccount::default().with_balance(U256::from(10u64).pow(U256::from(20))),
    );
    alloc.insert(
        store(),
        GenesisAccount::default()
            .with_code(Some(Bytes::from_static(&STORE_CODE)))
            .with_storage(Some(
                (100u64..140)
                    .map(|i| (B256::from(U256::from(i)), B256::from(U256::from(i * 7))))
                    .collect(),
            )),
    );
    alloc.insert(
        counter(),
        GenesisAccount::default().with_code(Some(counter_code(30).into())),
    );
    for i in 0..8 {
        alloc.insert(empty(i), GenesisAccount::default());
    }
    for i in 1..60 {
        alloc.insert(
            filler(i),
            GenesisAccount::default().with_balance(U256::from(i)),
        );
    }
    Genesis {
        config: cancun_config(CHAIN_ID),
        gas_limit: 30_000_000,
        base_fee_per_gas: Some(1_000_000_000),
        timestamp: 1_700_000_000,
        alloc,
        ..Default::default()
    }
}

/// The chain: its tree (every block with its post-state) and its blocks in order.
pub struct TestChain {
    pub factory: KilnBlockExecutorFactory,
    pub tree: BlockTree,
    pub blocks: Vec<EthBlock>,
    pub rlps: Vec<Bytes>,
    pub genesis: Genesis,
    nonce: u64,
}

impl TestChain {
    fn tx(&mut self, to: TxKind, value: U256, input: Vec<u8>) -> TxEnvelope {
        let tx = TxEip1559 {
            chain_id: CHAIN_ID,
            nonce: self.nonce,
            gas_limit: 200_000,
            max_fee_per_gas: 100_000_000_000,
            max_priority_fee_per_gas: 1,
            to,
            value,
            input: input.into(),
            ..Default::default()
        };
        self.nonce += 1;
        let signature = signer()
            .sign_hash_sync(&tx.signature_hash())
            .expect("signing");
        tx.into_signed(signature).into()
    }

    fn set_slot(&mut self, slot: u64, value: u64) -> TxEnvelope {
        let mut input = U256::from(slot).to_be_bytes::<32>().to_vec();
        input.extend(U256::from(value).to_be_bytes::<32>());
        self.tx(TxKind::Call(store()), U256::ZERO, input)
    }

    fn push(&mut self, transactions: Vec<TxEnvelope>) {
        let parent = self.tree.head().hash;
        let number = self.tree.head().header.number;
        let built = build_block(
            &self.factory,
            &mut self.tree,
            Payload {
                parent,
                timestamp: 1_700_000_000 + 12 * (number + 1),
                beneficiary: Address::with_last_byte(0xfe),
                prevrandao: B256::with_last_byte(number as u8),
                parent_beacon_block_root: B256::with_last_byte(number as u8 + 1),
                extra_data: Bytes::new(),
                transactions,
            },
        )
        .expect("a buildable block");
        self.tree.forkchoice(built.hash).expect("known");
        self.blocks.push(built.block);
        self.rlps.push(built.rlp);
    }

    /// Builds the chain's `n` blocks.
    pub fn build(n: u64) -> Self {
        let genesis = genesis();
        let spec = CancunSpec::from_genesis(&genesis.config).expect("a Cancun genesis");
        let factory = executor_factory_for(spec, KilnEvmFactory::new(Runtime::interpreter()));
        let tree = geth_genesis_tree(&factory, &genesis).expect("genesis");
        let mut chain = Self {
            factory,
            tree,
            blocks: Vec::new(),
            rlps: Vec::new(),
            genesis,
            nonce: 0,
        };
        for b in 0..n {
            let mut txs = Vec::new();
            match b % 4 {
                // Fill slots 10..40.
                0 => {
                    for slot in 10..40 {
                        txs.push(chain.set_slot(slot, 1000 + b * 100 + slot));
                    }
                }
                // Clear most of them and some genesis slots: deletions that collapse branches.
                1 => {
                    for slot in (10..38).chain(100..130) {
                        txs.push(chain.set_slot(slot, 0));
                    }
                }
                // New accounts, touched empty accounts (deleted), the counter.
                2 => {
                    for i in 0..6 {
                        let to = Address::repeat_byte(0x40 + (b as u8) * 8 + i);
                        txs.push(chain.tx(TxKind::Call(to), U256::from(1 + i), vec![]));
                    }
                    for i in 0..2 {
                        let e = empty(((b as u8 / 4) * 2 + i) % 8);
                        txs.push(chain.tx(TxKind::Call(e), U256::ZERO, vec![]));
                    }
                    txs.push(chain.tx(TxKind::Call(counter()), U256::ZERO, vec![]));
                }
                // A contract created (its runtime code is STORE_CODE), some slots rewritten.
                _ => {
                    let mut init = vec![0x60, STORE_CODE.len() as u8, 0x60, 0x0c, 0x60, 0x00];
                    init.extend([0x39, 0x60, STORE_CODE.len() as u8, 0x60, 0x00, 0xf3]);
                    init.extend(STORE_CODE);
                    txs.push(chain.tx(TxKind::Create, U256::ZERO, init));
                    for slot in [38, 39, 131, 132] {
                        txs.push(chain.set_slot(slot, 5 + b));
                    }
                    txs.push(chain.tx(TxKind::Call(counter()), U256::ZERO, vec![]));
                }
            }
            chain.push(txs);
        }
        chain
    }
}
