use kiln_evm::{difftest::*, Runtime};
use revm::primitives::hardfork::SpecId;

#[test]
fn add_and_return() {
    // PUSH1 2, PUSH1 3, ADD, PUSH1 0, MSTORE, PUSH1 32, PUSH1 0, RETURN
    let code = vec![
        0x60, 2, 0x60, 3, 0x01, 0x60, 0, 0x52, 0x60, 32, 0x60, 0, 0xf3,
    ];
    let rt = Runtime::jit();
    let (a, b) = compare(&Case::call(code, 100_000, SpecId::CANCUN), &rt);
    assert_eq!(a, b);
    assert!(
        rt.stats
            .compiled_frames
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
    println!("{a:?}");
}

/// The reth-facing path: `KilnEvmFactory` through the `alloy_evm::Evm` trait gives the same result
/// as alloy-evm's `EthEvmFactory`; with an inspector, frames run on the interpreter.
#[test]
fn evm_factory_matches_eth_evm_factory() {
    use alloy_evm::{EthEvmFactory, Evm, EvmEnv, EvmFactory};
    use kiln_evm::KilnEvmFactory;
    use revm::{
        context::{BlockEnv, CfgEnv, TxEnv},
        database::{CacheDB, EmptyDB},
        inspector::NoOpInspector,
        primitives::{Bytes, TxKind, U256},
        state::{AccountInfo, Bytecode},
    };
    use std::sync::atomic::Ordering;

    // SSTORE(0, CALLDATALOAD(0) * 3), return it.
    let code = vec![
        0x5f, 0x35, 0x60, 3, 0x02, 0x80, 0x5f, 0x55, 0x5f, 0x52, 0x60, 32, 0x5f, 0xf3,
    ];
    let db = || {
        let mut db = CacheDB::new(EmptyDB::default());
        let bc = Bytecode::new_raw(Bytes::from(code.clone()));
        db.insert_account_info(TARGET, AccountInfo::new(U256::ZERO, 1, bc.hash_slow(), bc));
        db.insert_account_info(
            CALLER,
            AccountInfo {
                balance: U256::from(10u64.pow(18)),
                ..Default::default()
            },
        );
        db
    };
    let env = || {
        let mut cfg = CfgEnv::new_with_spec(SpecId::PRAGUE);
        cfg.disable_nonce_check = true;
        EvmEnv {
            cfg_env: cfg,
            block_env: BlockEnv {
                gas_limit: 30_000_000,
                ..Default::default()
            },
        }
    };
    let tx = TxEnv::builder()
        .caller(CALLER)
        .kind(TxKind::Call(TARGET))
        .data(Bytes::from(U256::from(14u64).to_be_bytes_vec()))
        .gas_limit(100_000)
        .gas_price(0)
        .build()
        .unwrap();

    let runtime = Runtime::jit();
    let factory = KilnEvmFactory::new(runtime.clone());
    let mut kiln = factory.create_evm(db(), env());
    let mut eth = EthEvmFactory::default().create_evm(db(), env());
    let a = kiln.transact(tx.clone()).unwrap();
    let b = eth.transact(tx.clone()).unwrap();
    assert_eq!(a.result, b.result);
    assert_eq!(a.state, b.state);
    assert!(a.result.is_success());
    // Frame counters reach the runtime in batches; this EVM's are added now.
    assert_eq!(runtime.stats.compiled_frames.load(Ordering::Relaxed), 0);
    kiln.inner_mut().flush_stats();
    let compiled = runtime.stats.compiled_frames.load(Ordering::Relaxed);
    assert_eq!(compiled, 1);

    // With an inspector the frame runs on the interpreter.
    let mut traced = factory.create_evm_with_inspector(db(), env(), NoOpInspector {});
    let c = traced.transact(tx.clone()).unwrap();
    assert_eq!(c.result, b.result);
    traced.inner_mut().flush_stats();
    assert_eq!(
        runtime.stats.compiled_frames.load(Ordering::Relaxed),
        compiled
    );

    // A batch of frames is added on its own, the rest when the EVM is dropped.
    let batch = kiln_evm::dispatch::STATS_BATCH;
    let mut evm = factory.create_evm(db(), env());
    for _ in 0..=batch {
        evm.transact(tx.clone()).unwrap();
    }
    let load = || runtime.stats.compiled_frames.load(Ordering::Relaxed);
    assert_eq!(load(), compiled + batch);
    drop(evm);
    assert_eq!(load(), compiled + batch + 1);
}
