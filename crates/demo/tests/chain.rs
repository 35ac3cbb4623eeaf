//! Executes the demo chain (genesis, setup, generated blocks) directly on revm and checks that
//! every transaction succeeds, that swaps move prices, that the concentrated pools form a code
//! family, and that the generator is deterministic.

use alloy_consensus::{transaction::SignerRecoverable, Transaction, TxEnvelope};
use alloy_eips::eip1559::{calc_next_block_base_fee, BaseFeeParams};
use alloy_primitives::{keccak256, Address, Bytes, TxKind, B256, U256};
use alloy_sol_types::SolCall;
use kiln_demo::{
    contracts::{IProductPair, ITickPool, IWorkbench},
    mix::{BLOCK_GAS_LIMIT, GENESIS_BASE_FEE, GENESIS_TIMESTAMP},
    DemoChain, DemoTx, TxKindLabel, CHAIN_ID,
};
use revm::{
    context::{
        result::{ExecutionResult, Output},
        BlockEnv, Context, TxEnv,
    },
    database::{CacheDB, EmptyDB},
    primitives::hardfork::SpecId,
    state::{AccountInfo, Bytecode},
    ExecuteCommitEvm, ExecuteEvm, MainBuilder, MainContext,
};
use std::collections::BTreeMap;

type Db = CacheDB<EmptyDB>;

fn genesis_db(chain: &DemoChain) -> Db {
    let mut db = Db::new(EmptyDB::default());
    for (address, account) in chain.genesis().alloc {
        let code = account.code.clone().unwrap_or_default();
        let bytecode = Bytecode::new_raw(code);
        let info = AccountInfo {
            balance: account.balance,
            nonce: account.nonce.unwrap_or(0),
            code_hash: bytecode.hash_slow(),
            code: Some(bytecode),
            ..Default::default()
        };
        db.insert_account_info(address, info);
        for (slot, value) in account.storage.unwrap_or_default() {
            db.insert_account_storage(address, slot.into(), value.into())
                .expect("in memory");
        }
    }
    db
}

fn tx_env(tx: &DemoTx) -> TxEnv {
    let TxEnvelope::Eip1559(signed) = &tx.envelope else {
        panic!("the demo signs EIP-1559")
    };
    assert_eq!(
        tx.envelope.recover_signer().expect("valid signature"),
        tx.sender
    );
    let t = signed.tx();
    TxEnv {
        tx_type: 2,
        caller: tx.sender,
        gas_limit: t.gas_limit,
        gas_price: t.max_fee_per_gas,
        gas_priority_fee: Some(t.max_priority_fee_per_gas),
        kind: t.to,
        value: t.value,
        data: t.input.clone(),
        nonce: t.nonce,
        chain_id: Some(t.chain_id),
        access_list: t.access_list.clone(),
        ..Default::default()
    }
}

/// Runs the chain on revm block by block, keeping statistics.
struct Runner {
    evm: revm::handler::MainnetEvm<revm::handler::MainnetContext<Db>>,
    number: u64,
    base_fee: u64,
    gas_by_kind: BTreeMap<TxKindLabel, (u64, u64, u64)>,
    /// A funded account that view calls are made from (they are never committed).
    viewer: Address,
}

impl Runner {
    fn new(chain: &DemoChain) -> Self {
        let evm = Context::mainnet()
            .with_db(genesis_db(chain))
            .modify_cfg_chained(|cfg| {
                cfg.set_spec_and_mainnet_gas_params(SpecId::CANCUN);
                cfg.chain_id = CHAIN_ID;
            })
            .build_mainnet();
        Runner {
            evm,
            number: 0,
            base_fee: GENESIS_BASE_FEE,
            gas_by_kind: BTreeMap::new(),
            viewer: chain.addresses()[0],
        }
    }

    fn block(&mut self, txs: &[DemoTx]) {
        self.number += 1;
        let block = BlockEnv {
            number: U256::from(self.number),
            beneficiary: Address::with_last_byte(0xcb),
            timestamp: U256::from(GENESIS_TIMESTAMP + 12 * self.number),
            gas_limit: BLOCK_GAS_LIMIT,
            basefee: self.base_fee,
            difficulty: U256::ZERO,
            prevrandao: Some(keccak256(self.number.to_be_bytes())),
            blob_excess_gas_and_price: Some(
                revm::context_interface::block::BlobExcessGasAndPrice::new(0, 3_338_477),
            ),
            ..Default::default()
        };
        self.evm.ctx.block = block;
        let limits: u64 = txs.iter().map(|t| t.envelope.gas_limit()).sum();
        assert!(
            limits <= BLOCK_GAS_LIMIT,
            "block {} gas limits {limits}",
            self.number
        );
        let mut used = 0;
        for (i, tx) in txs.iter().enumerate() {
            let result = self.evm.transact_commit(tx_env(tx)).unwrap_or_else(|e| {
                panic!("block {} tx {i} ({}) invalid: {e:?}", self.number, tx.what)
            });
            let gas = result.tx_gas_used();
            match &result {
                ExecutionResult::Success { .. } => {}
                ExecutionResult::Revert { output, .. } => panic!(
                    "block {} tx {i}: {} ({}) reverted after {gas} gas: {}",
                    self.number,
                    tx.what,
                    tx.kind.name(),
                    alloy_sol_types::decode_revert_reason(output)
                        .unwrap_or_else(|| format!("{output}"))
                ),
                ExecutionResult::Halt { reason, .. } => panic!(
                    "block {} tx {i}: {} ({}) halted after {gas} gas: {reason:?}",
                    self.number,
                    tx.what,
                    tx.kind.name()
                ),
            }
            used += gas;
            let entry = self.gas_by_kind.entry(tx.kind).or_insert((0, 0, 0));
            entry.0 += 1;
            entry.1 += gas;
            entry.2 = entry.2.max(gas);
            assert!(
                tx.kind == TxKindLabel::EtherTransfer || gas * 10 <= tx.envelope.gas_limit() * 9,
                "{} used {gas} gas, too close to its limit {}",
                tx.what,
                tx.envelope.gas_limit()
            );
        }
        self.base_fee = calc_next_block_base_fee(
            used,
            BLOCK_GAS_LIMIT,
            self.base_fee,
            BaseFeeParams::ethereum(),
        );
    }

    fn view(&mut self, to: Address, data: Vec<u8>) -> Bytes {
        self.evm.ctx.cfg.disable_nonce_check = true;
        let tx = TxEnv {
            caller: self.viewer,
            gas_limit: 10_000_000,
            gas_price: self.evm.ctx.block.basefee as u128,
            kind: TxKind::Call(to),
            data: data.into(),
            chain_id: Some(CHAIN_ID),
            ..Default::default()
        };
        let out = self.evm.transact(tx).expect("view call runs").result;
        self.evm.ctx.cfg.disable_nonce_check = false;
        match out {
            ExecutionResult::Success {
                output: Output::Call(bytes),
                ..
            } => bytes,
            other => panic!("view call to {to} failed: {other:?}"),
        }
    }

    fn code(&mut self, address: Address) -> Bytes {
        let account = self
            .evm
            .ctx
            .journaled_state
            .database
            .cache
            .accounts
            .get(&address);
        let code = account
            .and_then(|a| a.info.code.clone())
            .expect("account has code");
        code.original_bytes()
    }

    fn reserves(&mut self, pair: Address) -> (U256, U256) {
        let out = self.view(pair, IProductPair::getReservesCall {}.abi_encode());
        let r = IProductPair::getReservesCall::abi_decode_returns(&out).expect("decodes");
        (U256::from(r.reserve0), U256::from(r.reserve1))
    }

    fn slot0(&mut self, pool: Address) -> (U256, i32, u128) {
        let out = self.view(pool, ITickPool::slot0Call {}.abi_encode());
        let s = ITickPool::slot0Call::abi_decode_returns(&out).expect("decodes");
        let out = self.view(pool, ITickPool::liquidityCall {}.abi_encode());
        let liquidity = ITickPool::liquidityCall::abi_decode_returns(&out).expect("decodes");
        (U256::from(s.price), s.tick.as_i32(), liquidity)
    }
}

/// The opcodes of `code` with PUSH immediates masked out.
fn skeleton(code: &[u8]) -> Vec<u8> {
    let mut out = code.to_vec();
    let mut i = 0;
    while i < code.len() {
        let op = code[i];
        if (0x60..=0x7f).contains(&op) {
            let n = (op - 0x5f) as usize;
            for b in out.iter_mut().skip(i + 1).take(n) {
                *b = 0;
            }
            i += n;
        }
        i += 1;
    }
    out
}

fn tick_of(price: U256) -> f64 {
    let p: f64 = price.to_string().parse().expect("number");
    let ratio = p / 2f64.powi(96);
    2.0 * ratio.ln() / 1.0001f64.ln()
}

#[test]
fn demo_chain_runs_on_revm() {
    let mut chain = DemoChain::new(7, 12);
    let mut runner = Runner::new(&chain);
    let setup = chain.setup_blocks_labeled();
    let setup_txs: usize = setup.iter().map(Vec::len).sum();
    for block in &setup {
        runner.block(block);
    }
    println!("setup: {} blocks, {setup_txs} transactions", setup.len());

    let d = chain.deployment().clone();
    // Every predicted address holds code; the pair factory and pool factory agree.
    for (address, name) in chain.contract_names() {
        assert!(
            !runner.code(address).is_empty(),
            "{name} at {address} has no code"
        );
    }
    let pairs_before: Vec<_> = d.pairs.iter().map(|p| runner.reserves(p.address)).collect();
    let pools_before: Vec<_> = d.pools.iter().map(|p| runner.slot0(p.address)).collect();
    for (p, s) in d.pools.iter().zip(&pools_before) {
        assert_eq!(
            s.0,
            U256::from(1u128 << 96),
            "{} starts at price 1",
            p.label
        );
        assert_eq!(s.1, 0, "{} starts at tick 0", p.label);
    }

    let mut liquidity_changed = vec![false; d.pools.len()];
    let mut total = 0;
    // KILN_DEMO_BLOCKS runs a longer chain (the demo's length) than the default 30 blocks.
    let blocks: usize = std::env::var("KILN_DEMO_BLOCKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    for _ in 0..blocks {
        let txs = chain.next_block_labeled(120, runner.base_fee);
        total += txs.len();
        runner.block(&txs);
        for (i, p) in d.pools.iter().enumerate() {
            let (price, tick, liquidity) = runner.slot0(p.address);
            if liquidity != pools_before[i].2 {
                liquidity_changed[i] = true;
            }
            // The pool's tick is floor(log_sqrt(1.0001)(price)).
            let exact = tick_of(price);
            assert!(
                (tick as f64) <= exact + 1e-6 && exact < tick as f64 + 1.0 + 1e-6,
                "{}: tick {tick} for price {price} (log {exact})",
                p.label
            );
        }
    }
    println!(
        "{blocks} blocks: {total} transactions, final base fee {}",
        runner.base_fee
    );

    let mut moved_pairs = 0;
    for (p, before) in d.pairs.iter().zip(&pairs_before) {
        let after = runner.reserves(p.address);
        println!("pair {}: {before:?} -> {after:?}", p.address);
        if after != *before {
            moved_pairs += 1;
        }
    }
    assert_eq!(moved_pairs, d.pairs.len(), "every pair's reserves moved");
    for (i, p) in d.pools.iter().enumerate() {
        let after = runner.slot0(p.address);
        println!(
            "{}: tick {} -> {}, liquidity {} -> {}",
            p.label, pools_before[i].1, after.1, pools_before[i].2, after.2
        );
        if i >= kiln_demo::mix::HOT_POOLS {
            // The long tail sees a swap now and then; its ticks are checked above.
            continue;
        }
        assert_ne!(after.0, pools_before[i].0, "{} price moved", p.label);
        assert!(
            liquidity_changed[i],
            "{}: no swap crossed an initialised tick",
            p.label
        );
    }

    // The pools are one code family: same length and opcodes, different PUSH immediates.
    let codes: Vec<Bytes> = d.pools.iter().map(|p| runner.code(p.address)).collect();
    let distinct: std::collections::BTreeSet<B256> = codes.iter().map(keccak256).collect();
    assert_eq!(
        distinct.len(),
        codes.len(),
        "each pool has its own code hash"
    );
    for (p, code) in d.pools.iter().zip(&codes) {
        assert_eq!(code.len(), codes[0].len(), "{} differs in length", p.label);
        assert_eq!(
            skeleton(code),
            skeleton(&codes[0]),
            "{} differs beyond immediates",
            p.label
        );
    }

    let out = runner.view(d.workbench, IWorkbench::runsCall {}.abi_encode());
    let runs = IWorkbench::runsCall::abi_decode_returns(&out).expect("decodes");
    assert!(runs > U256::ZERO, "compute calls ran");

    println!("gas by kind (count, mean, max, limit):");
    for (kind, (count, sum, max)) in &runner.gas_by_kind {
        println!(
            "  {:<22} {count:>5} {:>9} {max:>9} {:>9}",
            kind.name(),
            sum / count,
            kind.gas_limit()
        );
    }
    let mut sizes: BTreeMap<&str, usize> = BTreeMap::new();
    for (address, name) in chain.contract_names() {
        sizes.insert(name, runner.code(address).len());
    }
    println!("runtime code sizes:");
    for (name, size) in sizes {
        println!("  {name:<24} {size:>6} bytes");
    }
}

fn hashes(seed: u64) -> Vec<B256> {
    let mut chain = DemoChain::new(seed, 6);
    let mut out: Vec<B256> = chain
        .setup_blocks()
        .into_iter()
        .flatten()
        .map(|t| *t.tx_hash())
        .collect();
    for _ in 0..5 {
        out.extend(
            chain
                .next_block(50, GENESIS_BASE_FEE)
                .iter()
                .map(|t| *t.tx_hash()),
        );
    }
    out
}

#[test]
fn generator_is_deterministic() {
    let a = hashes(1);
    assert_eq!(a, hashes(1));
    assert_ne!(a, hashes(2));
    let g1 = serde_json::to_string(&DemoChain::new(1, 6).genesis()).expect("serialises");
    let g2 = serde_json::to_string(&DemoChain::new(1, 6).genesis()).expect("serialises");
    assert_eq!(g1, g2);
}

#[test]
fn genesis_is_geth_format_with_cancun() {
    let chain = DemoChain::new(3, 4);
    let json = serde_json::to_value(chain.genesis()).expect("serialises");
    assert_eq!(json["config"]["chainId"], 1337);
    assert_eq!(json["config"]["cancunTime"], 0);
    assert_eq!(json["config"]["shanghaiTime"], 0);
    let beacon = &json["alloc"]["0x000f3df6d732807ef1319fb7b8bb8522d0beac02"];
    assert!(beacon["code"]
        .as_str()
        .expect("code")
        .starts_with("0x3373fffffffffffffff"));
    let back: alloy_genesis::Genesis = serde_json::from_value(json).expect("parses back");
    assert_eq!(back.alloc.len(), 5);
}
