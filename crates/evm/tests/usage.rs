//! The usage tally: each EVM adds the gas its frames' own instructions spent and its frame count
//! per code, and hands them over per block.

use kiln_compiler::CompileOptions;
use kiln_evm::KilnEvm;
use kiln_runtime::{Backend, BlockUsage, CompilePolicy, Runtime};
use revm::{
    context::{BlockEnv, CfgEnv, TxEnv},
    database::{CacheDB, EmptyDB},
    primitives::{hardfork::SpecId, keccak256, Address, Bytes, TxKind, U256},
    state::{AccountInfo, Bytecode},
    Context, ExecuteCommitEvm, MainContext,
};
use std::sync::Arc;

const CALLER: Address = Address::with_last_byte(0xca);
const OUTER: Address = Address::with_last_byte(0xa0);
const INNER: Address = Address::with_last_byte(0xb0);

/// OUTER calls INNER with all its gas, then stores 1 at slot 1; INNER adds, multiplies and
/// stores the result (a fresh slot: no refund, so the execution gas is all in frames).
fn codes() -> (Vec<u8>, Vec<u8>) {
    let inner = vec![0x60, 5, 0x60, 7, 0x01, 0x60, 3, 0x02, 0x60, 0, 0x55, 0x00];
    let mut outer = vec![0x5f, 0x5f, 0x5f, 0x5f, 0x5f, 0x73];
    outer.extend_from_slice(INNER.as_slice());
    outer.extend([0x5a, 0xf1, 0x50, 0x60, 1, 0x60, 1, 0x55, 0x00]);
    (outer, inner)
}

fn db() -> CacheDB<EmptyDB> {
    let mut db = CacheDB::new(EmptyDB::default());
    let (outer, inner) = codes();
    for (address, code) in [(OUTER, outer), (INNER, inner)] {
        let bc = Bytecode::new_raw(Bytes::from(code));
        db.insert_account_info(address, AccountInfo::new(U256::ZERO, 1, bc.hash_slow(), bc));
    }
    db.insert_account_info(
        CALLER,
        AccountInfo {
            balance: U256::from(10u64.pow(18)),
            ..Default::default()
        },
    );
    db
}

fn block(number: u64) -> BlockEnv {
    BlockEnv {
        number: U256::from(number),
        timestamp: U256::from(1_000 + 12 * number),
        gas_limit: 30_000_000,
        ..Default::default()
    }
}

fn tx(nonce: u64) -> TxEnv {
    TxEnv::builder()
        .caller(CALLER)
        .kind(TxKind::Call(OUTER))
        .gas_limit(200_000)
        .gas_price(0)
        .nonce(nonce)
        .build()
        .unwrap()
}

/// Runs two transactions in block 1 and one in block 2 on one EVM; returns the reports and the
/// execution gas (gas used less the intrinsic 21,000) of each block.
fn run(runtime: &Arc<Runtime>) -> (Vec<BlockUsage>, [u64; 2]) {
    let ctx = Context::mainnet()
        .with_cfg(CfgEnv::new_with_spec(SpecId::CANCUN))
        .with_block(block(1))
        .with_db(db());
    let mut evm = KilnEvm::new(ctx, runtime.clone());
    let mut exec = [0u64; 2];
    for (nonce, number) in [(0, 1), (1, 1), (2, 2)] {
        evm.inner.ctx.block = block(number);
        let result = evm.transact_commit(tx(nonce)).unwrap();
        assert!(result.is_success(), "{result:?}");
        exec[number as usize - 1] += result.tx_gas_used() - 21_000;
    }
    drop(evm);
    (runtime.usage_reports().take(), exec)
}

fn check(reports: &[BlockUsage], exec: [u64; 2]) {
    let (outer, inner) = codes();
    assert_eq!(reports.len(), 2, "{reports:?}");
    for (report, (number, txs)) in reports.iter().zip([(1, 2), (2, 1)]) {
        assert_eq!(report.block.number, number);
        let usage = |code: &[u8]| {
            report
                .codes
                .iter()
                .find(|(h, _)| *h == keccak256(code))
                .map(|(_, u)| *u)
                .unwrap()
        };
        let (o, i) = (usage(&outer), usage(&inner));
        assert_eq!((o.frames, i.frames), (txs, txs));
        assert_eq!(o.gas + i.gas, exec[number as usize - 1], "{report:?}");
        assert!(i.gas > 0 && o.gas > i.gas);
    }
}

#[test]
fn usage_is_tallied_per_block_on_the_interpreter_and_on_compiled_code() {
    for policy in [CompilePolicy::LookupOnly, CompilePolicy::OnFirstSight] {
        let runtime = Arc::new(Runtime::new(
            Backend::Jit,
            policy,
            CompileOptions::default(),
        ));
        runtime.usage_reports().set_collecting(true);
        let (reports, exec) = run(&runtime);
        check(&reports, exec);
        let frames = runtime
            .stats
            .compiled_frames
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(frames > 0, policy == CompilePolicy::OnFirstSight);
    }
}

#[test]
fn nothing_is_tallied_unless_collection_is_on() {
    let runtime = Runtime::jit();
    let (reports, _) = run(&runtime);
    assert!(reports.is_empty());
}
