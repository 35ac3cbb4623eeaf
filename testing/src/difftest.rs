//! Differential execution: the same transaction through revm's interpreter and through kiln's
//! compiled code, compared on everything observable. Used by the tests, `kiln fuzz` and
//! `kiln bench` (which refuses to time modes that disagree).

use kiln_evm::KilnEvm;
use kiln_runtime::Runtime;
use revm::{
    context::{BlockEnv, CfgEnv, Context, TxEnv},
    context_interface::result::ExecutionResult,
    database::{CacheDB, EmptyDB},
    primitives::{hardfork::SpecId, Address, Bytes, TxKind, U256},
    state::{AccountInfo, Bytecode, EvmState},
    ExecuteEvm, MainBuilder, MainContext,
};
use std::sync::Arc;

/// An account in the pre-state.
#[derive(Clone, Debug, Default)]
pub struct PreAccount {
    /// Balance.
    pub balance: U256,
    /// Nonce.
    pub nonce: u64,
    /// Code.
    pub code: Vec<u8>,
    /// Storage.
    pub storage: Vec<(U256, U256)>,
}

/// One differential case.
#[derive(Clone, Debug)]
pub struct Case {
    /// Accounts before the transaction.
    pub pre: Vec<(Address, PreAccount)>,
    /// The sender (funded automatically if absent from `pre`).
    pub caller: Address,
    /// The callee, or `None` for a contract creation with `data` as init code.
    pub to: Option<Address>,
    /// Calldata / init code.
    pub data: Vec<u8>,
    /// Value.
    pub value: U256,
    /// Gas limit.
    pub gas_limit: u64,
    /// Spec.
    pub spec: SpecId,
}

impl Case {
    /// A call of `code` deployed at a fixed address, from a funded sender.
    pub fn call(code: Vec<u8>, gas_limit: u64, spec: SpecId) -> Self {
        Self {
            pre: vec![(
                TARGET,
                PreAccount {
                    code,
                    balance: U256::from(1_000_000u64),
                    ..Default::default()
                },
            )],
            caller: CALLER,
            to: Some(TARGET),
            data: vec![],
            value: U256::ZERO,
            gas_limit,
            spec,
        }
    }
}

/// The address [`Case::call`] deploys its code at.
pub const TARGET: Address = Address::new([0x10; 20]);
/// The sender [`Case::call`] uses.
pub const CALLER: Address = Address::new([0xca; 20]);

/// One changed account: address, info, storage (sorted by key), and whether it was destroyed.
pub type AccountDiff = (Address, AccountInfo, Vec<(U256, U256)>, bool);

/// What a run produced.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// The execution result (gas used, refund, halt reason, output, logs), or the validation
    /// error.
    pub result: Result<ExecutionResult, String>,
    /// Changed accounts, sorted, with storage sorted.
    pub state: Vec<AccountDiff>,
}

fn build_db(case: &Case) -> CacheDB<EmptyDB> {
    let mut db = CacheDB::new(EmptyDB::default());
    let mut has_caller = false;
    for (addr, acc) in &case.pre {
        has_caller |= *addr == case.caller;
        let code = Bytecode::new_raw(Bytes::copy_from_slice(&acc.code));
        let info = AccountInfo::new(acc.balance, acc.nonce, code.hash_slow(), code);
        db.insert_account_info(*addr, info);
        for (k, v) in &acc.storage {
            db.insert_account_storage(*addr, *k, *v)
                .expect("in-memory db");
        }
    }
    if !has_caller {
        db.insert_account_info(
            case.caller,
            AccountInfo {
                balance: U256::from(10u128.pow(30)),
                ..Default::default()
            },
        );
    }
    db
}

fn tx(case: &Case) -> TxEnv {
    TxEnv::builder()
        .caller(case.caller)
        .kind(case.to.map(TxKind::Call).unwrap_or(TxKind::Create))
        .data(Bytes::copy_from_slice(&case.data))
        .value(case.value)
        .gas_limit(case.gas_limit)
        .gas_price(0)
        .build()
        .expect("valid test transaction")
}

fn normalize(state: EvmState) -> Vec<AccountDiff> {
    let mut out: Vec<_> = state
        .into_iter()
        .filter(|(_, a)| a.is_touched())
        .map(|(addr, a)| {
            let mut storage: Vec<_> = a
                .storage
                .iter()
                .filter(|(_, s)| s.is_changed())
                .map(|(k, s)| (*k, s.present_value))
                .collect();
            storage.sort();
            let mut info = a.info.clone();
            // Code is compared through its hash.
            info.code = None;
            (addr, info, storage, a.is_selfdestructed())
        })
        .collect();
    out.sort_by_key(|(a, ..)| *a);
    out
}

fn context(case: &Case) -> Context<BlockEnv, TxEnv, CfgEnv, CacheDB<EmptyDB>> {
    let mut cfg = CfgEnv::new_with_spec(case.spec);
    cfg.disable_nonce_check = true;
    let block = BlockEnv {
        gas_limit: u64::MAX,
        number: U256::from(1u64),
        timestamp: U256::from(1u64),
        ..Default::default()
    };
    Context::mainnet()
        .with_cfg(cfg)
        .with_block(block)
        .with_db(build_db(case))
}

/// Runs `case` on stock revm.
pub fn run_revm(case: &Case) -> Outcome {
    let mut evm = context(case).build_mainnet();
    outcome(
        evm.transact(tx(case))
            .map(|r| (r.result, r.state))
            .map_err(|e| e.to_string()),
    )
}

/// Runs `case` on kiln's EVM with `runtime`.
pub fn run_kiln(case: &Case, runtime: &Arc<Runtime>) -> Outcome {
    let mut evm = KilnEvm::new(context(case), runtime.clone());
    outcome(
        evm.transact(tx(case))
            .map(|r| (r.result, r.state))
            .map_err(|e| e.to_string()),
    )
}

fn outcome(r: Result<(ExecutionResult, EvmState), String>) -> Outcome {
    match r {
        Ok((result, state)) => Outcome {
            result: Ok(result),
            state: normalize(state),
        },
        Err(e) => Outcome {
            result: Err(e),
            state: vec![],
        },
    }
}

/// Runs `case` both ways and returns both outcomes.
pub fn compare(case: &Case, runtime: &Arc<Runtime>) -> (Outcome, Outcome) {
    (run_revm(case), run_kiln(case, runtime))
}
