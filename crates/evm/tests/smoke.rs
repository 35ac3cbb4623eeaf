//! End-to-end checks of dispatch: kiln's EVM and factory against stock revm, the profile-guided
//! and tiered policies through real EVMs, and the frame counters.

use kiln_runtime::Runtime;
use kiln_testing::difftest::*;
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
        inspector::NoOpInspector,
        primitives::{Bytes, TxKind, U256},
    };
    use std::sync::atomic::Ordering;

    // SSTORE(0, CALLDATALOAD(0) * 3), return it.
    let code = vec![
        0x5f, 0x35, 0x60, 3, 0x02, 0x80, 0x5f, 0x55, 0x5f, 0x52, 0x60, 32, 0x5f, 0xf3,
    ];
    let db = || db_with(&code);
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

/// Profile-guided compilation, with the profile recorded by the runtime's own frames
/// (`CompilePolicy::AfterProfile`) or on the factory's inspector path: the profiled path runs
/// compiled, the rest is handed to the interpreter.
#[test]
fn profile_then_compile_what_ran() {
    use alloy_evm::{EthEvmFactory, Evm, EvmEnv, EvmFactory};
    use kiln_evm::{CoverageInspector, KilnEvmFactory};
    use kiln_runtime::{Backend, CompilePolicy, Entry};
    use revm::{
        context::{BlockEnv, CfgEnv, TxEnv},
        primitives::{keccak256, Bytes, TxKind, U256},
    };
    use std::sync::{atomic::Ordering, Arc};

    // if calldataload(0) { sstore(0, 1) } return calldataload(0) * 2
    #[rustfmt::skip]
    let code = vec![
        0x5f, 0x35, 0x60, 8, 0x57, // 0: JUMPI to 8 if the word is non-zero
        0x60, 13, 0x56, // 5: else jump to 13
        0x5b, 0x60, 1, 0x5f, 0x55, // 8: sstore(0, 1), falls into 13
        0x5b, 0x5f, 0x35, 0x60, 2, 0x02, 0x5f, 0x52, 0x60, 32, 0x5f, 0xf3, // 13: return word * 2
    ];
    let db = || db_with(&code);
    let env = || EvmEnv {
        cfg_env: CfgEnv::new_with_spec(SpecId::PRAGUE),
        block_env: BlockEnv {
            gas_limit: 30_000_000,
            ..Default::default()
        },
    };
    let tx = |word: u64| {
        TxEnv::builder()
            .caller(CALLER)
            .kind(TxKind::Call(TARGET))
            .data(Bytes::from(U256::from(word).to_be_bytes_vec()))
            .gas_limit(100_000)
            .gas_price(0)
            .build()
            .unwrap()
    };

    let same_as_eth = |factory: &KilnEvmFactory, word: u64| {
        let mut kiln = factory.create_evm(db(), env());
        let mut eth = EthEvmFactory::default().create_evm(db(), env());
        let a = kiln.transact(tx(word)).unwrap();
        let b = eth.transact(tx(word)).unwrap();
        assert_eq!(a.result, b.result, "word {word}");
        assert_eq!(a.state, b.state, "word {word}");
        kiln.inner_mut().flush_stats();
    };
    let counts = |rt: &Runtime| {
        let s = &rt.stats;
        [
            &s.interpreted_frames,
            &s.compiled_frames,
            &s.handoffs,
            &s.compilations,
        ]
        .map(|c| c.load(Ordering::Relaxed))
    };

    // The runtime profiles the first two frame runs itself, then compiles what they ran.
    let runtime = Arc::new(Runtime::new(
        Backend::Jit,
        CompilePolicy::AfterProfile { runs: 2 },
        Default::default(),
    ));
    let factory = KilnEvmFactory::new(runtime.clone());
    same_as_eth(&factory, 0);
    same_as_eth(&factory, 0);
    assert_eq!(counts(&runtime), [2, 0, 0, 0]);
    let Some(Entry::Profiling(profile)) = runtime.get(keccak256(&code), SpecId::PRAGUE) else {
        panic!("not profiled");
    };
    assert_eq!(profile.runs(), 2);
    assert!(profile.coverage().contains(13) && !profile.coverage().contains(8));
    same_as_eth(&factory, 0);
    assert_eq!(counts(&runtime), [2, 1, 0, 1]);
    same_as_eth(&factory, 21);
    assert_eq!(
        counts(&runtime),
        [2, 2, 1, 1],
        "the branch never profiled hands over"
    );
    // When the cold branch keeps running, the code is profiled again from the old profile
    // and compiled with the branch.
    let limit = kiln_runtime::COLD_HANDOFFS_BEFORE_REPROFILE;
    for _ in 1..limit {
        same_as_eth(&factory, 21);
    }
    assert_eq!(counts(&runtime), [2, 1 + limit, limit, 1]);
    assert_eq!(runtime.stats.cold_handoffs.load(Ordering::Relaxed), limit);
    assert_eq!(runtime.stats.reprofiles.load(Ordering::Relaxed), 1);
    same_as_eth(&factory, 21);
    same_as_eth(&factory, 21);
    assert_eq!(counts(&runtime), [4, 1 + limit, limit, 1]);
    same_as_eth(&factory, 21);
    same_as_eth(&factory, 0);
    assert_eq!(
        counts(&runtime),
        [4, 3 + limit, limit, 2],
        "compiled with both branches"
    );

    // A profile from the factory's inspector path, compiled by the caller.
    let runtime = Arc::new(Runtime::new(
        Backend::Jit,
        CompilePolicy::LookupOnly,
        Default::default(),
    ));
    let factory = KilnEvmFactory::new(runtime.clone());
    let mut profiled = factory.create_evm_with_inspector(db(), env(), CoverageInspector::new());
    assert!(profiled.transact(tx(0)).unwrap().result.is_success());
    let hash = keccak256(&code);
    let coverage = profiled
        .inspector()
        .coverage(&hash)
        .expect("the code ran")
        .clone();
    assert!(coverage.contains(0) && coverage.contains(5) && coverage.contains(13));
    assert!(
        !coverage.contains(8),
        "the untaken branch is not in the profile"
    );

    let compiled = runtime
        .compile(hash, SpecId::PRAGUE, &code, Some(&coverage))
        .unwrap();
    runtime.insert(hash, SpecId::PRAGUE, Entry::Ready(Arc::new(compiled)));
    same_as_eth(&factory, 0);
    same_as_eth(&factory, 21);
    // Both ran compiled; the second took the branch the profile never saw.
    assert_eq!(counts(&runtime), [0, 2, 1, 1]);
}

/// A profiled frame resumed after a call keeps recording, also when the call ran the same code
/// one level deeper.
#[test]
fn profiling_follows_a_frame_across_its_calls() {
    use kiln_runtime::{Backend, CompilePolicy, Entry};
    use revm::primitives::keccak256;
    use std::sync::Arc;
    // With calldata: CALL itself without calldata (which stops at 4), then sstore(0, 42).
    #[rustfmt::skip]
    let code = vec![
        0x36, 0x60, 5, 0x57, 0x00, // 0: no calldata: STOP at 4
        0x5b, 0x5f, 0x5f, 0x5f, 0x5f, 0x5f, 0x30, 0x5a, 0xf1, // 5: CALL(gas, self, 0, 0, 0, 0, 0)
        0x50, 0x60, 42, 0x5f, 0x55, 0x00, // 14: after the call
    ];
    let runtime = Arc::new(Runtime::new(
        Backend::Jit,
        CompilePolicy::AfterProfile { runs: 100 },
        Default::default(),
    ));
    let mut case = Case::call(code.clone(), 200_000, SpecId::CANCUN);
    case.data = vec![1];
    let (revm, kiln) = compare(&case, &runtime);
    assert_eq!(revm, kiln);
    let Some(Entry::Profiling(profile)) = runtime.get(keccak256(&code), SpecId::CANCUN) else {
        panic!("not profiled");
    };
    // The outer frame before and after its call, the inner one in between.
    assert_eq!(profile.runs(), 3);
    let coverage = profile.coverage();
    for pc in [0, 3, 4, 5, 13, 14, 18, 19] {
        assert!(coverage.contains(pc), "pc {pc} not recorded");
    }
    assert_eq!(
        coverage.len(),
        18,
        "every instruction but the two immediates"
    );
}

/// An in-memory database with `code` at [`TARGET`] and a funded [`CALLER`].
fn db_with(code: &[u8]) -> revm::database::CacheDB<revm::database::EmptyDB> {
    use revm::{
        database::{CacheDB, EmptyDB},
        primitives::{Bytes, U256},
        state::{AccountInfo, Bytecode},
    };
    let mut db = CacheDB::new(EmptyDB::default());
    let bc = Bytecode::new_raw(Bytes::copy_from_slice(code));
    db.insert_account_info(TARGET, AccountInfo::new(U256::ZERO, 1, bc.hash_slow(), bc));
    db.insert_account_info(
        CALLER,
        AccountInfo {
            balance: U256::from(10u64.pow(18)),
            ..Default::default()
        },
    );
    db
}

/// Tiered compilation: baseline code on first sight, replaced by optimised code compiled in the
/// background once enough EVMs have looked it up; results match revm at every tier.
#[test]
fn tiered_runtime_promotes_baseline_code_in_the_background() {
    use kiln_runtime::{Backend, CompilePolicy, Tier};
    use revm::primitives::keccak256;
    use std::{
        sync::{atomic::Ordering, Arc},
        time::{Duration, Instant},
    };

    // Sums 40 + 39 + ... + 1 in a loop, stores the sum in slot 0 and returns it.
    let code = vec![
        0x5f, 0x60, 40, // acc = 0, i = 40
        0x5b, 0x80, 0x15, 0x60, 20, 0x57, // loop (pc 3): if i == 0 goto end
        0x80, 0x91, 0x01, 0x90, // acc += i
        0x60, 1, 0x90, 0x03, // i -= 1
        0x60, 3, 0x56, // goto loop
        0x5b, 0x50, 0x80, 0x5f, 0x55, // end (pc 20): slot 0 = acc
        0x5f, 0x52, 0x60, 32, 0x5f, 0xf3, // return acc
    ];
    let hash = keccak256(&code);
    let runtime = Arc::new(Runtime::new(
        Backend::Jit,
        CompilePolicy::Tiered { promote_after: 2 },
        Default::default(),
    ));
    let case = Case::call(code, 1_000_000, SpecId::CANCUN);
    let run = || {
        let (a, b) = compare(&case, &runtime);
        assert_eq!(a, b);
        assert!(a.result.as_ref().is_ok_and(|r| r.is_success()), "{a:?}");
    };
    run();
    assert_eq!(runtime.tier(hash, SpecId::CANCUN), Some(Tier::Baseline));
    run();
    // The second lookup handed it to the background compiler.
    let deadline = Instant::now() + Duration::from_secs(120);
    while runtime.tier(hash, SpecId::CANCUN) != Some(Tier::Optimised) {
        assert_eq!(runtime.tier(hash, SpecId::CANCUN), Some(Tier::Promoting));
        assert!(Instant::now() < deadline, "no promotion within two minutes");
        std::thread::sleep(Duration::from_millis(10));
    }
    run();
    let s = &runtime.stats;
    assert_eq!(s.promotions.load(Ordering::Relaxed), 1);
    assert_eq!(s.compilations.load(Ordering::Relaxed), 2);
    assert_eq!(s.interpreted_frames.load(Ordering::Relaxed), 0);
    assert_eq!(s.compiled_frames.load(Ordering::Relaxed), 3);
}

/// An EVM from `KilnEvmFactory` over `code` at `TARGET` (Cancun), and a call to it with `data`.
fn long_lived_evm(
    runtime: &std::sync::Arc<Runtime>,
    code: &[u8],
    data: &'static [u8],
) -> (
    kiln_evm::KilnAlloyEvm<
        revm::database::CacheDB<revm::database::EmptyDB>,
        revm::inspector::NoOpInspector,
    >,
    revm::context::TxEnv,
) {
    use alloy_evm::{EvmEnv, EvmFactory};
    use revm::{
        context::{CfgEnv, TxEnv},
        primitives::{Bytes, TxKind},
    };
    let mut cfg = CfgEnv::new_with_spec(SpecId::CANCUN);
    cfg.disable_nonce_check = true;
    let env = EvmEnv {
        cfg_env: cfg,
        block_env: Default::default(),
    };
    let evm = kiln_evm::KilnEvmFactory::new(runtime.clone()).create_evm(db_with(code), env);
    let tx = TxEnv::builder()
        .caller(CALLER)
        .kind(TxKind::Call(TARGET))
        .data(Bytes::from_static(data))
        .gas_limit(100_000)
        .gas_price(0)
        .build()
        .unwrap();
    (evm, tx)
}

/// One EVM that lives for many transactions (a builder's, a simulator's) counts towards its
/// code's promotion by looking it up again every few transactions, and runs the optimised code
/// from the transaction after it lands: it lets go of the baseline code.
#[test]
fn a_long_lived_evm_promotes_and_then_runs_the_optimised_code() {
    use alloy_evm::Evm;
    use kiln_runtime::{Backend, CompilePolicy, Entry, Tier};
    use revm::primitives::keccak256;
    use std::{
        sync::{atomic::Ordering, Arc},
        time::{Duration, Instant},
    };

    // SSTORE(0, CALLDATASIZE + 7), return it.
    let code = vec![
        0x36, 0x60, 7, 0x01, 0x80, 0x5f, 0x55, 0x5f, 0x52, 0x60, 32, 0x5f, 0xf3,
    ];
    let hash = keccak256(&code);
    let runtime = Arc::new(Runtime::new(
        Backend::Jit,
        CompilePolicy::Tiered { promote_after: 2 },
        Default::default(),
    ));
    let (mut evm, tx) = long_lived_evm(&runtime, &code, &[1, 2, 3]);
    let first = evm.transact(tx.clone()).unwrap();
    assert!(first.result.is_success(), "{:?}", first.result);
    let Some(Entry::Ready(baseline)) = runtime.get(hash, SpecId::CANCUN) else {
        panic!("no baseline code registered");
    };
    assert_eq!(runtime.tier(hash, SpecId::CANCUN), Some(Tier::Baseline));

    // Only this EVM runs the code: without its periodic lookups the code would never reach
    // two lookups.
    let deadline = Instant::now() + Duration::from_secs(120);
    while runtime.tier(hash, SpecId::CANCUN) != Some(Tier::Optimised) {
        assert!(Instant::now() < deadline, "no promotion within two minutes");
        let again = evm.transact(tx.clone()).unwrap();
        assert_eq!(again.result, first.result);
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(runtime.stats.promotions.load(Ordering::Relaxed), 1);
    let after = evm.transact(tx.clone()).unwrap();
    assert_eq!(after.result, first.result);
    assert_eq!(after.state, first.state);
    // Nothing but this test holds the baseline function now: the EVM runs the optimised one.
    assert_eq!(Arc::strong_count(&baseline), 1);
    evm.inner_mut().flush_stats();
    assert_eq!(runtime.stats.interpreted_frames.load(Ordering::Relaxed), 0);
}

/// An EVM sees registry changes made while it lives (here an entry replaced by a failure, as an
/// operator's ban would) from its next transaction on: it does not keep running what it
/// looked up before.
#[test]
fn a_long_lived_evm_sees_registry_changes_between_transactions() {
    use alloy_evm::Evm;
    use kiln_runtime::{Backend, CompilePolicy, Entry};
    use revm::primitives::keccak256;
    use std::sync::{atomic::Ordering, Arc};

    let code = vec![0x36, 0x60, 7, 0x01, 0x5f, 0x52, 0x60, 32, 0x5f, 0xf3];
    let hash = keccak256(&code);
    let runtime = Arc::new(Runtime::new(
        Backend::Jit,
        CompilePolicy::LookupOnly,
        Default::default(),
    ));
    let compiled = runtime.compile(hash, SpecId::CANCUN, &code, None).unwrap();
    runtime.insert(hash, SpecId::CANCUN, Entry::Ready(Arc::new(compiled)));
    let (mut evm, tx) = long_lived_evm(&runtime, &code, &[]);
    let frames = || {
        let s = &runtime.stats;
        (
            s.compiled_frames.load(Ordering::Relaxed),
            s.interpreted_frames.load(Ordering::Relaxed),
        )
    };
    let first = evm.transact(tx.clone()).unwrap();
    evm.inner_mut().flush_stats();
    assert_eq!(frames(), (1, 0));
    runtime.insert(hash, SpecId::CANCUN, Entry::Failed("banned".into()));
    let second = evm.transact(tx.clone()).unwrap();
    assert_eq!(second.result, first.result);
    evm.inner_mut().flush_stats();
    assert_eq!(frames(), (1, 1));
}

/// A promotion lands only over the baseline code it was compiled to replace: an entry changed
/// while the optimising compilation ran (here, marked failed) stays as it is.
#[test]
fn promotion_never_replaces_an_entry_changed_meanwhile() {
    use kiln_runtime::{Backend, CompilePolicy, Entry};
    use revm::primitives::keccak256;
    use std::{
        sync::{atomic::Ordering, Arc},
        time::{Duration, Instant},
    };

    // PUSH1 2, PUSH1 3, ADD, PUSH0, MSTORE, PUSH1 32, PUSH0, RETURN
    let code = vec![0x60, 2, 0x60, 3, 0x01, 0x5f, 0x52, 0x60, 32, 0x5f, 0xf3];
    let hash = keccak256(&code);
    let runtime = Arc::new(Runtime::new(
        Backend::Jit,
        CompilePolicy::Tiered { promote_after: 1 },
        Default::default(),
    ));
    let (a, b) = compare(&Case::call(code, 100_000, SpecId::CANCUN), &runtime);
    assert_eq!(a, b);
    // The first lookup compiled the baseline tier and handed it to the background compiler.
    runtime.insert(hash, SpecId::CANCUN, Entry::Failed("replaced".into()));
    let deadline = Instant::now() + Duration::from_secs(120);
    while runtime.stats.compilations.load(Ordering::Relaxed) < 2 {
        assert!(
            Instant::now() < deadline,
            "the optimising compilation never finished"
        );
        std::thread::sleep(Duration::from_millis(10));
        runtime.apply_promotions();
    }
    assert!(matches!(
        runtime.get(hash, SpecId::CANCUN),
        Some(Entry::Failed(_))
    ));
    assert_eq!(runtime.stats.promotions.load(Ordering::Relaxed), 0);
}
