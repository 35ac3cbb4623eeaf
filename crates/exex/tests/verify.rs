//! Verification before promotion: new compiled code serves canonical execution only after it
//! matched the interpreter on real transactions replayed in the background; a miscompilation
//! (the compiler's test-only fault) is caught, banned, kept banned across a restart, and leaves
//! a reproducer that `kiln statetest` fails on the faulty code and passes on the interpreter.

use alloy_evm::{Evm, EvmEnv, EvmFactory};
use kiln_compiler::{CompileOptions, Fault, OptLevel};
use kiln_evm::KilnEvmFactory;
use kiln_exex::{BlockRecord, Chain, Notification, Service, ServiceConfig};
use kiln_runtime::{Backend, BlockId, CompilePolicy, Entry, Runtime, Tier};
use kiln_testing::{
    statetest::{self, Outcome},
    Mode,
};
use revm::{
    context::{BlockEnv, CfgEnv, TxEnv},
    database::{CacheDB, EmptyDB},
    primitives::{hardfork::SpecId, keccak256, Address, Bytes, TxKind, B256, U256},
    state::{AccountInfo, Bytecode},
    DatabaseCommit,
};
use std::{
    path::Path,
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

const SPEC: SpecId = SpecId::CANCUN;
const TARGET: Address = Address::with_last_byte(0xaa);
const CALLER: Address = Address::with_last_byte(0xca);

/// A counting loop (heat), then `slot[0] = (3 < 5)` and a log of it: a compiler that lowers LT
/// wrongly stores, logs and charges something else.
fn contract() -> Vec<u8> {
    vec![
        0x61, 0x00, 0x40, // PUSH2 64
        0x5b, // JUMPDEST (3)
        0x60, 0x01, 0x90, 0x03, // PUSH1 1 SWAP1 SUB
        0x80, 0x60, 0x03, 0x57, // DUP1 PUSH1 3 JUMPI
        0x50, // POP
        0x60, 0x05, 0x60, 0x03, 0x10, // PUSH1 5 PUSH1 3 LT
        0x80, 0x60, 0x00, 0x55, // DUP1 PUSH1 0 SSTORE
        0x60, 0x00, 0x52, // PUSH1 0 MSTORE
        0x60, 0x20, 0x60, 0x00, 0xa0, // PUSH1 32 PUSH1 0 LOG0
        0x00, // STOP
    ]
}

fn block_env(n: u64) -> BlockEnv {
    BlockEnv {
        number: U256::from(n),
        timestamp: U256::from(1_000 + 12 * n),
        beneficiary: Address::with_last_byte(1),
        gas_limit: 30_000_000,
        basefee: 7,
        prevrandao: Some(B256::ZERO),
        ..Default::default()
    }
}

fn record(n: u64, code: &[u8], deploys: bool) -> BlockRecord {
    let env = block_env(n);
    BlockRecord {
        number: n,
        hash: B256::with_last_byte(n as u8),
        parent_hash: B256::with_last_byte(n as u8 - 1),
        id: BlockId {
            number: n,
            timestamp: env.timestamp.to(),
            beneficiary: env.beneficiary,
            prevrandao: env.prevrandao,
            gas_limit: env.gas_limit,
            basefee: env.basefee,
        },
        spec: SPEC,
        deployed: if deploys {
            vec![(keccak256(code), Bytes::copy_from_slice(code))]
        } else {
            Vec::new()
        },
        usage: None,
    }
}

/// A chain: the contract and a funded caller; blocks of `txs` calls each, executed through the
/// `EvmFactory` a block executor uses.
struct Node {
    db: CacheDB<EmptyDB>,
    factory: KilnEvmFactory,
    nonce: u64,
}

impl Node {
    fn new(runtime: Arc<Runtime>) -> Self {
        let mut db = CacheDB::new(EmptyDB::default());
        let bc = Bytecode::new_raw(Bytes::from(contract()));
        db.insert_account_info(TARGET, AccountInfo::new(U256::ZERO, 1, bc.hash_slow(), bc));
        db.insert_account_info(
            CALLER,
            AccountInfo {
                balance: U256::from(10u64.pow(18)),
                ..Default::default()
            },
        );
        Self {
            db,
            factory: KilnEvmFactory::new(runtime),
            nonce: 0,
        }
    }

    fn execute(&mut self, n: u64, txs: usize) {
        let env = EvmEnv {
            cfg_env: CfgEnv::new_with_spec(SPEC),
            block_env: block_env(n),
        };
        let mut evm = self.factory.create_evm(&mut self.db, env);
        for _ in 0..txs {
            let tx = TxEnv::builder()
                .caller(CALLER)
                .kind(TxKind::Call(TARGET))
                .gas_limit(1_000_000)
                .gas_price(7)
                .nonce(self.nonce)
                .build()
                .unwrap();
            self.nonce += 1;
            let executed = evm.transact_raw(tx).unwrap();
            assert!(executed.result.is_success(), "{:?}", executed.result);
            evm.db_mut().commit(executed.state);
        }
        // Dropping the EVM hands its usage tally and frame counters over.
    }
}

fn runtime() -> Arc<Runtime> {
    Arc::new(Runtime::new(
        Backend::Jit,
        CompilePolicy::LookupOnly,
        CompileOptions::default(),
    ))
}

fn config(fault: Option<Fault>, cache: &Path) -> ServiceConfig {
    ServiceConfig {
        half_life_blocks: 1e12,
        hot_threshold_gas: 1_000,
        // The quick tier only.
        optimise_threshold_gas: u64::MAX,
        isolation: false,
        verify_runs: 2,
        cache_dir: Some(cache.join("cache")),
        reproducer_dir: Some(cache.join("mismatches")),
        compile: CompileOptions {
            fault,
            ..CompileOptions::default()
        },
        ..ServiceConfig::default()
    }
}

/// Polls the service until `done` holds (verification waits for replays on another thread).
fn poll_until(service: &mut Service, done: impl Fn(&Service) -> bool) {
    for _ in 0..20_000 {
        service.poll();
        if done(service) {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("timed out; stats {:?}", service.stats());
}

#[test]
fn new_code_serves_only_after_it_matched_the_interpreter_on_real_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let code = contract();
    let key = (keccak256(&code), SPEC);
    let runtime = runtime();
    let mut service = Service::new(runtime.clone(), config(None, dir.path()), None);
    let mut node = Node::new(runtime.clone());

    node.execute(1, 3);
    service.on_notification(&Notification::Committed {
        new: Arc::new(Chain::new(vec![record(1, &code, true)])),
    });
    assert!(service.wait_idle(Duration::from_secs(120)));
    assert_eq!(service.verifying(key), Some(0), "{:?}", service.stats());
    assert!(matches!(
        runtime.get(key.0, key.1),
        Some(Entry::Verifying(None))
    ));
    assert!(runtime.captures().wanted());
    assert_eq!(service.installed(key), None);

    // Block 2 runs on the interpreter and is recorded; two of its transactions are replayed.
    node.execute(2, 3);
    assert_eq!(runtime.stats.compiled_frames.load(Ordering::Relaxed), 0);
    poll_until(&mut service, |s| s.installed(key).is_some());
    assert_eq!(service.installed(key), Some(Tier::Baseline));
    assert_eq!(service.stats().verify_matches, 2);
    assert_eq!(service.stats().verify_mismatches, 0);
    assert!(!runtime.captures().wanted());
    // Only verified code is kept for the next start.
    assert_eq!(
        std::fs::read_dir(dir.path().join("cache"))
            .unwrap()
            .filter(|e| e
                .as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "kobj"))
            .count(),
        1
    );

    node.execute(3, 3);
    assert_eq!(runtime.stats.compiled_frames.load(Ordering::Relaxed), 3);
    service.shutdown();
}

#[test]
fn an_injected_miscompilation_is_caught_banned_and_reproduced() {
    let dir = tempfile::tempdir().unwrap();
    let code = contract();
    let key = (keccak256(&code), SPEC);
    let runtime = runtime();
    let config = config(Some(Fault::FlipLt), dir.path());
    let mut service = Service::new(runtime.clone(), config.clone(), None);
    let mut node = Node::new(runtime.clone());

    node.execute(1, 3);
    service.on_notification(&Notification::Committed {
        new: Arc::new(Chain::new(vec![record(1, &code, true)])),
    });
    assert!(service.wait_idle(Duration::from_secs(120)));
    assert_eq!(service.verifying(key), Some(0));

    node.execute(2, 3);
    poll_until(&mut service, |s| s.banned(key).is_some());
    let why = service.banned(key).unwrap().to_owned();
    assert!(why.contains("disagreed with the interpreter"), "{why}");
    assert!(service.stats().verify_mismatches >= 1);
    assert_eq!(service.installed(key), None);
    assert!(matches!(runtime.get(key.0, key.1), Some(Entry::Failed(_))));
    // The faulty code never ran for canonical execution, and does not now.
    node.execute(3, 3);
    assert_eq!(runtime.stats.compiled_frames.load(Ordering::Relaxed), 0);

    // Heat keeps the code hot, but a banned code is not compiled again.
    service.on_notification(&Notification::Committed {
        new: Arc::new(Chain::new(vec![record(2, &code, false)])),
    });
    assert!(service.wait_idle(Duration::from_secs(120)));
    assert!(service.queue().is_empty());
    assert_eq!(service.stats().compiled_quick, 0);
    service.shutdown();
    drop(service);

    // The reproducer: the recorded transaction as a state test, expecting the interpreter's
    // result. The interpreter passes it; the faulty compiler fails it.
    let reproducers: Vec<_> = std::fs::read_dir(dir.path().join("mismatches"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(reproducers.len(), 1, "{reproducers:?}");
    let file = &reproducers[0];
    let interpreted = statetest::run_file(file, Mode::Interpreter, CompileOptions::default())
        .expect("the reproducer runs");
    assert_eq!(interpreted.len(), 1);
    assert_eq!(
        interpreted[0].outcome,
        Outcome::Passed,
        "{:?}",
        interpreted[0].error
    );
    let faulty = CompileOptions {
        opt_level: OptLevel::Baseline,
        fault: Some(Fault::FlipLt),
        ..CompileOptions::default()
    };
    let compiled = statetest::run_file(file, Mode::Jit, faulty).unwrap();
    assert_eq!(compiled[0].outcome, Outcome::Failed);
    let fixed = CompileOptions {
        opt_level: OptLevel::Baseline,
        ..CompileOptions::default()
    };
    let compiled = statetest::run_file(file, Mode::Jit, fixed).unwrap();
    assert_eq!(compiled[0].outcome, Outcome::Passed);

    // The ban survives a restart.
    let restarted = self::runtime();
    let service = Service::new(restarted.clone(), config, None);
    assert_eq!(service.banned(key), Some(why.as_str()));
    assert!(matches!(
        restarted.get(key.0, key.1),
        Some(Entry::Failed(_))
    ));
    service.shutdown();
}
