//! The hot-code service fed committed, reorged and reverted notifications: heat, queue order,
//! `FinishedHeight`, and code compiled in the background that dispatch then runs.

use kiln_compiler::CompileOptions;
use kiln_evm::KilnEvm;
use kiln_exex::{BlockRecord, Chain, FinishedHeight, Notification, Service, ServiceConfig};
use kiln_runtime::{Backend, BlockId, BlockUsage, CodeUsage, CompilePolicy, Entry, Runtime, Tier};
use revm::{
    context::{BlockEnv, CfgEnv, TxEnv},
    database::{CacheDB, EmptyDB},
    primitives::{hardfork::SpecId, keccak256, Address, Bytes, TxKind, B256, U256},
    state::{AccountInfo, Bytecode},
    Context, ExecuteCommitEvm, MainContext,
};
use std::{
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

const SPEC: SpecId = SpecId::CANCUN;

/// A counting loop from `n` down to zero: code worth compiling, distinct per `n`.
fn loop_code(n: u16) -> Vec<u8> {
    let [hi, lo] = n.to_be_bytes();
    vec![
        0x61, hi, lo, 0x5b, 0x60, 0x01, 0x90, 0x03, 0x80, 0x60, 0x03, 0x57, 0x00,
    ]
}

fn id(number: u64, fork: u8) -> BlockId {
    BlockId {
        number,
        timestamp: 1_000 + 12 * number,
        beneficiary: Address::with_last_byte(fork),
        prevrandao: None,
        gas_limit: 30_000_000,
        basefee: 7,
    }
}

fn hash(number: u64, fork: u8) -> B256 {
    let mut h = B256::left_padding_from(&number.to_be_bytes());
    h.0[0] = fork;
    h
}

/// Block `number` of fork `fork`, with the given gas per code (or `None`: matched from reports).
fn block(number: u64, fork: u8, usage: Option<&[(&[u8], u64)]>) -> BlockRecord {
    BlockRecord {
        number,
        hash: hash(number, fork),
        parent_hash: hash(number - 1, if number == 1 { 0 } else { fork }),
        id: id(number, fork),
        spec: SPEC,
        deployed: Vec::new(),
        usage: usage.map(|u| {
            u.iter()
                .map(|(code, gas)| {
                    (
                        keccak256(code),
                        CodeUsage {
                            gas: *gas,
                            frames: 1,
                            ..CodeUsage::default()
                        },
                    )
                })
                .collect()
        }),
    }
}

fn deploying(mut block: BlockRecord, codes: &[&[u8]]) -> BlockRecord {
    block.deployed = codes
        .iter()
        .map(|c| (keccak256(c), Bytes::copy_from_slice(c)))
        .collect();
    block
}

fn committed(blocks: Vec<BlockRecord>) -> Notification {
    Notification::Committed {
        new: Arc::new(Chain::new(blocks)),
    }
}

fn runtime() -> Arc<Runtime> {
    Arc::new(Runtime::new(
        Backend::Jit,
        CompilePolicy::LookupOnly,
        CompileOptions::default(),
    ))
}

fn config() -> ServiceConfig {
    ServiceConfig {
        // No decay within these tests unless a test asks for it.
        half_life_blocks: 1e12,
        hot_threshold_gas: 1_000,
        optimise_threshold_gas: 10_000,
        compile: CompileOptions::default(),
        isolation: false,
        // Verification has tests of its own (tests/verify.rs).
        verify_runs: 0,
        ..ServiceConfig::default()
    }
}

fn key(code: &[u8]) -> (B256, SpecId) {
    (keccak256(code), SPEC)
}

fn assert_heat(service: &Service, code: &[u8], expected: f64) {
    let heat = service.heat().score(key(code));
    assert!(
        (heat - expected).abs() <= 1e-6 * expected.max(1.0),
        "heat {heat}, expected {expected}"
    );
}

#[test]
fn committed_blocks_heat_codes_and_queue_the_hottest_first() {
    let (a, b, c, d) = (loop_code(1), loop_code(2), loop_code(3), loop_code(4));
    let mut service = Service::new(runtime(), config(), None);
    let first = deploying(
        block(
            1,
            1,
            Some(&[(&a, 5_000), (&b, 20_000), (&c, 500), (&d, 3_000)]),
        ),
        &[&a, &b, &c, &d],
    );
    let done = service.on_notification(&committed(vec![first]));
    assert_eq!(
        done,
        Some(FinishedHeight {
            number: 1,
            hash: hash(1, 1)
        })
    );
    let ranked: Vec<_> = service
        .heat()
        .ranked()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(ranked, [key(&b), key(&a), key(&d), key(&c)]);
    // The one worker took the hottest job (b, straight to the optimising tier); the rest wait
    // hottest first; c is not hot.
    let queued: Vec<_> = service
        .queue()
        .ordered()
        .into_iter()
        .map(|j| (j.key, j.tier))
        .collect();
    assert_eq!(
        queued,
        [(key(&a), Tier::Baseline), (key(&d), Tier::Baseline)]
    );
    assert!(service.wait_idle(Duration::from_secs(120)));
    assert_eq!(service.installed(key(&b)), Some(Tier::Optimised));
    assert_eq!(service.installed(key(&a)), Some(Tier::Baseline));
    assert_eq!(service.installed(key(&c)), None);
    assert!(matches!(
        service.runtime().get(keccak256(&a), SPEC),
        Some(Entry::Ready(_))
    ));
    // a keeps running: it is promoted.
    service.on_notification(&committed(vec![block(2, 1, Some(&[(&a, 6_000)]))]));
    assert!(service.wait_idle(Duration::from_secs(120)));
    assert_eq!(service.installed(key(&a)), Some(Tier::Optimised));
    assert_eq!(service.stats().compiled_quick, 2);
    assert_eq!(service.stats().compiled_optimised, 2);
    service.shutdown();
}

#[test]
fn a_reverted_block_takes_its_heat_back_and_reports_its_parent() {
    let a = loop_code(10);
    let mut config = config();
    config.hot_threshold_gas = 1_500;
    let mut service = Service::new(runtime(), config, None);
    service.on_notification(&committed(vec![deploying(
        block(1, 1, Some(&[(&a, 700)])),
        &[&a],
    )]));
    service.on_notification(&committed(vec![block(2, 1, Some(&[(&a, 700)]))]));
    assert_heat(&service, &a, 1_400.0);
    assert!(service.queue().is_empty() && service.installed(key(&a)).is_none());
    let done = service.on_notification(&Notification::Reverted {
        old: Arc::new(Chain::new(vec![block(2, 1, None)])),
    });
    assert_eq!(
        done,
        Some(FinishedHeight {
            number: 1,
            hash: hash(1, 1)
        })
    );
    assert_heat(&service, &a, 700.0);
    assert_eq!(service.heat().head(), 1);
    // Block 2 again, on another fork, with more gas: now hot.
    service.on_notification(&committed(vec![block(2, 2, Some(&[(&a, 900)]))]));
    assert_heat(&service, &a, 1_600.0);
    assert!(service.wait_idle(Duration::from_secs(120)));
    assert_eq!(service.installed(key(&a)), Some(Tier::Baseline));
    service.shutdown();
}

#[test]
fn a_reorg_swaps_the_old_blocks_heat_for_the_new() {
    let (a, b) = (loop_code(20), loop_code(21));
    let mut service = Service::new(runtime(), config(), None);
    service.on_notification(&committed(vec![
        block(1, 1, Some(&[(&a, 100)])),
        block(2, 1, Some(&[(&a, 200), (&b, 50)])),
    ]));
    let done = service.on_notification(&Notification::Reorged {
        old: Arc::new(Chain::new(vec![block(2, 1, None)])),
        new: Arc::new(Chain::new(vec![
            block(2, 2, Some(&[(&b, 300)])),
            block(3, 2, Some(&[(&b, 400)])),
        ])),
    });
    assert_eq!(
        done,
        Some(FinishedHeight {
            number: 3,
            hash: hash(3, 2)
        })
    );
    assert_heat(&service, &a, 100.0);
    assert_heat(&service, &b, 700.0);
    assert_eq!(service.heat().head(), 3);
    service.shutdown();
}

#[test]
fn usage_of_a_block_never_committed_adds_no_heat_and_expires() {
    let a = loop_code(30);
    let runtime = runtime();
    let mut config = config();
    config.reorg_window = 4;
    let mut service = Service::new(runtime.clone(), config, None);
    let report = |block: BlockId, gas| BlockUsage {
        block,
        spec: SPEC,
        codes: vec![(
            keccak256(&a),
            CodeUsage {
                gas,
                frames: 1,
                ..CodeUsage::default()
            },
        )],
    };
    // Block 1 of fork 1 was executed (and reported) twice over, as a payload built and then
    // imported; block 1 of fork 2 was executed and never committed.
    runtime.usage_reports().report(report(id(1, 1), 400));
    runtime.usage_reports().report(report(id(1, 2), 9_000));
    runtime.usage_reports().report(report(id(1, 1), 500));
    // A prewarming EVM ran part of block 1 under its identity: the full report still wins.
    runtime.usage_reports().report(report(id(1, 1), 120));
    service.on_notification(&committed(vec![block(1, 1, None)]));
    assert_heat(&service, &a, 500.0);
    for n in 2..=6 {
        service.on_notification(&committed(vec![block(n, 1, Some(&[]))]));
    }
    assert_heat(&service, &a, 500.0);
    assert_eq!(service.stats().expired_reports, 1);
    assert!(service.queue().is_empty());
    service.shutdown();
}

#[test]
fn heat_decays_with_the_half_life() {
    let a = loop_code(40);
    let mut config = config();
    config.half_life_blocks = 2.0;
    let mut service = Service::new(runtime(), config, None);
    service.on_notification(&committed(vec![block(1, 1, Some(&[(&a, 800)]))]));
    for n in 2..=5 {
        service.on_notification(&committed(vec![block(n, 1, Some(&[]))]));
    }
    assert!((service.heat().score(key(&a)) - 200.0).abs() < 1e-6);
    service.shutdown();
}

/// End to end: EVMs execute blocks on the interpreter and report usage; once the blocks are
/// committed the service compiles the hot code in the background; EVMs of later blocks run it
/// natively, having only looked it up.
#[test]
fn dispatch_runs_code_the_service_compiled_from_committed_blocks() {
    let code = loop_code(200);
    let target = Address::with_last_byte(0xaa);
    let caller = Address::with_last_byte(0xca);
    let mut db = CacheDB::new(EmptyDB::default());
    let bc = Bytecode::new_raw(Bytes::from(code.clone()));
    db.insert_account_info(target, AccountInfo::new(U256::ZERO, 1, bc.hash_slow(), bc));
    db.insert_account_info(
        caller,
        AccountInfo {
            balance: U256::from(10u64.pow(18)),
            ..Default::default()
        },
    );
    let runtime = runtime();
    let mut service = Service::new(runtime.clone(), config(), None);
    let env = |n: u64| BlockEnv {
        number: U256::from(n),
        timestamp: U256::from(1_000 + 12 * n),
        beneficiary: Address::with_last_byte(1),
        gas_limit: 30_000_000,
        basefee: 7,
        ..Default::default()
    };
    let mut nonce = 0;
    let mut execute = |db: &mut CacheDB<EmptyDB>, n: u64| {
        let ctx = Context::mainnet()
            .with_cfg(CfgEnv::new_with_spec(SPEC))
            .with_block(env(n))
            .with_db(db);
        let mut evm = KilnEvm::new(ctx, runtime.clone());
        for _ in 0..3 {
            let tx = TxEnv::builder()
                .caller(caller)
                .kind(TxKind::Call(target))
                .gas_limit(1_000_000)
                .gas_price(7)
                .nonce(nonce)
                .build()
                .unwrap();
            nonce += 1;
            assert!(evm.transact_commit(tx).unwrap().is_success());
        }
    };
    execute(&mut db, 1);
    assert_eq!(runtime.stats.compiled_frames.load(Ordering::Relaxed), 0);
    let mut first = block(1, 1, None);
    first.id.prevrandao = Some(B256::ZERO);
    first.deployed = vec![(keccak256(&code), Bytes::from(code.clone()))];
    service.on_notification(&committed(vec![first]));
    assert!(service.wait_idle(Duration::from_secs(120)));
    assert!(
        service.installed(key(&code)).is_some(),
        "{:?}",
        service.stats()
    );
    execute(&mut db, 2);
    assert_eq!(runtime.stats.compiled_frames.load(Ordering::Relaxed), 3);
    service.shutdown();
}

#[test]
fn pause_resume_disable_and_clear() {
    let a = loop_code(50);
    let mut service = Service::new(runtime(), config(), None);
    let control = service.control();
    control.pause();
    service.on_notification(&committed(vec![deploying(
        block(1, 1, Some(&[(&a, 5_000)])),
        &[&a],
    )]));
    assert!(service.wait_idle(Duration::from_secs(5)));
    assert_eq!(service.queue().len(), 1, "paused: queued, not started");
    assert_eq!(service.installed(key(&a)), None);
    control.resume();
    assert!(service.wait_idle(Duration::from_secs(120)));
    assert_eq!(service.installed(key(&a)), Some(Tier::Baseline));
    assert!(service.runtime().get(keccak256(&a), SPEC).is_some());

    // Disabled: the code leaves the registry and hot blocks queue nothing.
    control.set_enabled(false);
    service.poll();
    assert!(service.runtime().get(keccak256(&a), SPEC).is_none());
    service.on_notification(&committed(vec![block(2, 1, Some(&[(&a, 5_000)]))]));
    assert!(service.queue().is_empty());
    assert_eq!(service.installed(key(&a)), None);

    // Enabled again: what keeps running is compiled again, at the tier its heat calls for.
    control.set_enabled(true);
    service.on_notification(&committed(vec![block(3, 1, Some(&[(&a, 5_000)]))]));
    assert!(service.wait_idle(Duration::from_secs(120)));
    assert_eq!(service.installed(key(&a)), Some(Tier::Optimised));

    control.clear();
    service.poll();
    assert!(service.runtime().get(keccak256(&a), SPEC).is_none());
    assert_eq!(service.installed(key(&a)), None);
    service.shutdown();
}

/// Runs one call of `code` (deployed at a fixed address) on a fresh EVM of `runtime`.
fn call_once(runtime: &Arc<Runtime>, code: &[u8]) {
    gas_of(runtime, code);
}

#[test]
fn a_restart_with_a_warm_cache_runs_hot_code_natively_from_the_first_block() {
    let dir = tempfile::tempdir().unwrap();
    let code = loop_code(300);
    let config = ServiceConfig {
        cache_dir: Some(dir.path().join("cache")),
        ..config()
    };
    {
        let mut service = Service::new(runtime(), config.clone(), None);
        service.on_notification(&committed(vec![deploying(
            block(1, 1, Some(&[(&code, 50_000)])),
            &[&code],
        )]));
        assert!(service.wait_idle(Duration::from_secs(120)));
        assert_eq!(service.installed(key(&code)), Some(Tier::Optimised));
        service.shutdown();
    }
    // A new process, as far as the registry knows: nothing compiled, nothing notified yet.
    let runtime = runtime();
    let service = Service::new(runtime.clone(), config, None);
    assert_eq!(service.stats().cache_loads, 1);
    assert_eq!(service.installed(key(&code)), Some(Tier::Optimised));
    assert_heat(&service, &code, 50_000.0);
    call_once(&runtime, &code);
    assert_eq!(runtime.stats.compiled_frames.load(Ordering::Relaxed), 1);
    assert_eq!(runtime.stats.interpreted_frames.load(Ordering::Relaxed), 0);
    service.shutdown();
}

#[test]
fn a_broken_cache_directory_is_refused_and_the_service_runs_without_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let open = dir.path().join("cache");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let code = loop_code(301);
    let mut service = Service::new(
        runtime(),
        ServiceConfig {
            cache_dir: Some(open.clone()),
            ..config()
        },
        None,
    );
    service.on_notification(&committed(vec![deploying(
        block(1, 1, Some(&[(&code, 5_000)])),
        &[&code],
    )]));
    assert!(service.wait_idle(Duration::from_secs(120)));
    assert_eq!(service.installed(key(&code)), Some(Tier::Baseline));
    service.shutdown();
    assert_eq!(
        std::fs::read_dir(&open).unwrap().count(),
        0,
        "nothing written there"
    );
}

#[test]
fn over_the_memory_budget_the_least_recently_used_code_is_evicted_and_freed() {
    let (a, b) = (loop_code(400), loop_code(401));
    let quick = CompileOptions {
        opt_level: kiln_compiler::OptLevel::Baseline,
        ..CompileOptions::default()
    };
    let one = kiln_compiler::compile_jit(&loop_code(402), SPEC, &quick, None)
        .unwrap()
        .object_bytes() as u64;
    let runtime = runtime();
    let mut service = Service::new(
        runtime.clone(),
        ServiceConfig {
            code_cache_bytes: one + one / 2,
            // Siblings would share one function, which evicting one of them cannot free.
            families: false,
            ..config()
        },
        None,
    );
    service.on_notification(&committed(vec![deploying(
        block(1, 1, Some(&[(&a, 5_000)])),
        &[&a, &b],
    )]));
    assert!(service.wait_idle(Duration::from_secs(120)));
    let Some(Entry::Ready(code_a)) = runtime.get(keccak256(&a), SPEC) else {
        panic!("a is not installed")
    };
    let freed = Arc::downgrade(&code_a);
    drop(code_a);
    std::thread::sleep(Duration::from_millis(5));
    service.on_notification(&committed(vec![block(2, 1, Some(&[(&b, 5_000)]))]));
    assert!(service.wait_idle(Duration::from_secs(120)));
    assert_eq!(
        service.installed(key(&a)),
        None,
        "a, used longest ago, was evicted"
    );
    assert_eq!(service.installed(key(&b)), Some(Tier::Baseline));
    assert!(runtime.get(keccak256(&a), SPEC).is_none());
    assert!(freed.upgrade().is_none(), "a's code was freed");
    assert!(service.resident_bytes() <= one + one / 2);
    assert_eq!(service.stats().evictions, 1);
    service.shutdown();
}

#[test]
fn code_no_canonical_block_used_for_the_idle_limit_is_evicted() {
    let a = loop_code(410);
    let mut service = Service::new(
        runtime(),
        ServiceConfig {
            idle_evict_secs: 1,
            ..config()
        },
        None,
    );
    service.on_notification(&committed(vec![deploying(
        block(1, 1, Some(&[(&a, 5_000)])),
        &[&a],
    )]));
    assert!(service.wait_idle(Duration::from_secs(120)));
    assert_eq!(service.installed(key(&a)), Some(Tier::Baseline));
    std::thread::sleep(Duration::from_millis(1_200));
    service.poll();
    assert_eq!(service.installed(key(&a)), None);
    assert_eq!(service.stats().evictions, 1);
    service.shutdown();
}

/// reth's policy as a mode of the service: lookups from any execution (a side fork's too),
/// one compilation at the optimising tier once a code reaches the threshold, and a revert takes
/// nothing back. The comparison counters follow canonical blocks only.
#[test]
fn the_lookups_policy_compiles_once_after_n_lookups_from_any_execution() {
    let (a, b) = (loop_code(50), loop_code(51));
    let runtime = runtime();
    let mut config = config();
    config.policy = kiln_exex::Policy::Lookups;
    config.lookup_threshold = 3;
    let mut service = Service::new(runtime.clone(), config, None);
    let report = |block: BlockId, codes: &[(&[u8], u64, u64)]| BlockUsage {
        block,
        spec: SPEC,
        codes: codes
            .iter()
            .map(|(code, gas, native_gas)| {
                (
                    keccak256(code),
                    CodeUsage {
                        gas: *gas,
                        frames: 1,
                        native_gas: *native_gas,
                    },
                )
            })
            .collect(),
    };
    // Two side-fork executions and one canonical: three lookups of `a`, two of `b`.
    runtime
        .usage_reports()
        .report(report(id(1, 2), &[(&a, 10, 0), (&b, 10, 0)]));
    runtime
        .usage_reports()
        .report(report(id(1, 3), &[(&a, 10, 0), (&b, 10, 0)]));
    runtime
        .usage_reports()
        .report(report(id(1, 1), &[(&a, 30, 0)]));
    service.on_notification(&deploying_committed(1, &[&a, &b]));
    assert!(service.wait_idle(Duration::from_secs(120)));
    assert_eq!(service.installed(key(&a)), Some(Tier::Optimised));
    assert_eq!(service.installed(key(&b)), None);
    assert_eq!(service.stats().compiled_quick, 0);
    assert_eq!(service.stats().compiled_optimised, 1);
    assert_eq!(service.stats().canonical_gas, 30);
    assert_eq!(service.stats().unused_compilations, 1);

    // Reverting the block that deployed and ran `a` takes nothing back.
    service.on_notification(&Notification::Reverted {
        old: Arc::new(Chain::new(vec![block(1, 1, None)])),
    });
    assert!(service.wait_idle(Duration::from_secs(60)));
    assert_eq!(service.installed(key(&a)), Some(Tier::Optimised));

    // A canonical block runs `a` natively: its compilation has been used, 3 of 4 gas native.
    runtime
        .usage_reports()
        .report(report(id(1, 4), &[(&a, 90, 90), (&b, 10, 0)]));
    service.on_notification(&committed(vec![block(1, 4, None)]));
    assert!(service.wait_idle(Duration::from_secs(120)));
    let stats = service.stats().clone();
    assert_eq!((stats.canonical_gas, stats.canonical_native_gas), (130, 90));
    // `b`'s third lookup came with that block: it is compiled too, once, and no canonical
    // block has run it natively yet.
    assert_eq!(service.installed(key(&b)), Some(Tier::Optimised));
    assert_eq!(stats.compiled_optimised, 2);
    assert_eq!(stats.unused_compilations, 1, "{stats:?}");
    service.shutdown();
}

/// Block 1 of fork 1, deploying `codes`, its usage matched from the EVMs' reports.
fn deploying_committed(number: u64, codes: &[&[u8]]) -> Notification {
    committed(vec![deploying(block(number, 1, None), codes)])
}

/// Gas used by one call of `code`, on `runtime`.
fn gas_of(runtime: &Arc<Runtime>, code: &[u8]) -> u64 {
    let (target, caller) = (Address::with_last_byte(0xaa), Address::with_last_byte(0xca));
    let mut db = CacheDB::new(EmptyDB::default());
    let bc = Bytecode::new_raw(Bytes::copy_from_slice(code));
    db.insert_account_info(target, AccountInfo::new(U256::ZERO, 1, bc.hash_slow(), bc));
    db.insert_account_info(
        caller,
        AccountInfo {
            balance: U256::from(10u64.pow(18)),
            ..Default::default()
        },
    );
    let ctx = Context::mainnet()
        .with_cfg(CfgEnv::new_with_spec(SPEC))
        .with_db(db);
    let tx = TxEnv::builder()
        .caller(caller)
        .kind(TxKind::Call(target))
        .gas_limit(1_000_000)
        .gas_price(0)
        .build()
        .unwrap();
    let mut evm = KilnEvm::new(ctx, runtime.clone());
    let result = evm.transact_commit(tx).unwrap();
    assert!(result.is_success());
    evm.flush_stats();
    result.tx_gas_used()
}

#[test]
fn siblings_share_one_family_function_and_keep_it_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    // Four codes that differ only in the loop count they push: one family.
    let codes: Vec<Vec<u8>> = [100, 200, 300, 400].map(loop_code).to_vec();
    let refs: Vec<&[u8]> = codes.iter().map(|c| &c[..]).collect();
    let usage: Vec<(&[u8], u64)> = refs.iter().map(|c| (*c, 50_000)).collect();
    let config = ServiceConfig {
        cache_dir: Some(dir.path().join("cache")),
        ..config()
    };
    let interpreter = Runtime::interpreter();
    let expected: Vec<u64> = codes.iter().map(|c| gas_of(&interpreter, c)).collect();
    assert!(expected.windows(2).all(|w| w[0] < w[1]), "{expected:?}");
    {
        let runtime = runtime();
        let mut service = Service::new(runtime.clone(), config.clone(), None);
        service.on_notification(&committed(vec![deploying(
            block(1, 1, Some(&usage)),
            &refs,
        )]));
        assert!(service.wait_idle(Duration::from_secs(120)));
        let stats = service.stats().clone();
        assert_eq!(
            (
                stats.family_compilations,
                stats.family_shares,
                stats.compiled_optimised
            ),
            (1, 3, 4),
            "{stats:?}"
        );
        let shared = service.compile_log().iter().filter(|e| e.shared).count();
        assert_eq!(shared, 3);
        for (code, gas) in codes.iter().zip(&expected) {
            assert_eq!(service.installed(key(code)), Some(Tier::Optimised));
            assert_eq!(gas_of(&runtime, code), *gas);
        }
        assert_eq!(runtime.stats.compiled_frames.load(Ordering::Relaxed), 4);
        service.shutdown();
    }
    // A restart links the family's object once and serves every member from it.
    let runtime = runtime();
    let service = Service::new(runtime.clone(), config, None);
    assert_eq!(service.stats().cache_loads, 4);
    for (code, gas) in codes.iter().zip(&expected) {
        assert_eq!(gas_of(&runtime, code), *gas);
    }
    assert_eq!(runtime.stats.compiled_frames.load(Ordering::Relaxed), 4);
    assert_eq!(runtime.stats.interpreted_frames.load(Ordering::Relaxed), 0);
    service.shutdown();
}

#[test]
fn without_families_each_sibling_is_compiled() {
    let codes: Vec<Vec<u8>> = [100, 200, 300].map(loop_code).to_vec();
    let refs: Vec<&[u8]> = codes.iter().map(|c| &c[..]).collect();
    let usage: Vec<(&[u8], u64)> = refs.iter().map(|c| (*c, 50_000)).collect();
    let config = ServiceConfig {
        families: false,
        ..config()
    };
    let mut service = Service::new(runtime(), config, None);
    service.on_notification(&committed(vec![deploying(
        block(1, 1, Some(&usage)),
        &refs,
    )]));
    assert!(service.wait_idle(Duration::from_secs(120)));
    let stats = service.stats();
    assert_eq!(
        (
            stats.family_compilations,
            stats.family_shares,
            stats.compiled_optimised
        ),
        (0, 0, 3),
        "{stats:?}"
    );
    service.shutdown();
}
