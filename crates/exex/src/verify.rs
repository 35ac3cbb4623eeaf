//! Verification before promotion: a transaction recorded while new code waited
//! ([`Capture`]) is replayed off the execution path, once on the interpreter and once with the
//! new code, from the state it read; the two must agree on gas, output, logs, halt reason and
//! state changes. The interpreter replay must also reproduce what the node executed, or the
//! recording is not trusted either way.

use alloy_evm::{Evm, EvmEnv, EvmFactory};
use kiln_evm::{roots, KilnEvmFactory};
use kiln_runtime::{Capture, CodeKey, Runtime};
use revm::{
    context_interface::result::{ExecutionResult, HaltReason, ResultAndState},
    database::{CacheDB, CacheState, EmptyDB, State},
    primitives::{hardfork::SpecId, Address, Bytes, B256, KECCAK_EMPTY, U256},
    state::{AccountInfo, EvmState},
    DatabaseCommit,
};
use serde_json::{json, Map, Value};
use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    sync::Arc,
};

/// What a verification run found.
#[derive(Debug)]
pub enum Verdict {
    /// The new code did what the interpreter did.
    Match,
    /// It did not: `difference` is the first thing that differs; `expected` is the interpreter's
    /// replay (what the reproducer expects).
    Mismatch {
        /// The first difference, in words.
        difference: String,
        /// The interpreter's replay.
        expected: Box<ResultAndState<HaltReason>>,
    },
    /// The recording could not be replayed faithfully (the interpreter's replay did not
    /// reproduce the execution: it read state the recording cannot hold, such as a block hash);
    /// it counts neither way.
    Inconclusive(String),
}

/// Replays `capture` with the runtime `runtime` dispatches to, from the state it read.
pub fn replay(
    capture: &Capture,
    runtime: &Arc<Runtime>,
) -> Result<ResultAndState<HaltReason>, String> {
    let env = EvmEnv {
        cfg_env: capture.cfg.clone(),
        block_env: capture.block.clone(),
    };
    let mut evm = KilnEvmFactory::new(runtime.clone()).create_evm(pre_state(capture), env);
    evm.transact_raw(capture.tx.clone())
        .map_err(|e| format!("replay failed: {e}"))
}

/// The state the recorded transaction read: each account it loaded as it was when the
/// transaction started, with the slots it loaded. Accounts it found missing stay missing.
pub fn pre_state(capture: &Capture) -> CacheDB<EmptyDB> {
    let mut db = CacheDB::new(EmptyDB::default());
    for (address, info, storage) in pre_accounts(capture) {
        db.insert_account_info(address, info);
        for (slot, value) in storage {
            // Cannot fail: the account was just inserted and EmptyDB never errs.
            let _ = db.insert_account_storage(address, slot, value);
        }
    }
    db
}

/// The accounts of [`pre_state`]: address, info with code, and the loaded slots' values.
fn pre_accounts(capture: &Capture) -> Vec<(Address, AccountInfo, BTreeMap<U256, U256>)> {
    let mut accounts = Vec::new();
    for (address, account) in &capture.state {
        if account.is_loaded_as_not_existing() {
            continue;
        }
        let mut info = account.original_info();
        info.account_id = None;
        if info.code.is_none() || info.code.as_ref().is_some_and(|c| c.is_empty()) {
            // The journal may have fetched the code after loading the account.
            if info.code_hash != KECCAK_EMPTY && account.info.code_hash == info.code_hash {
                info.code = account.info.code.clone();
            }
        }
        let storage = account
            .storage
            .iter()
            .map(|(slot, value)| (*slot, value.original_value))
            .collect();
        accounts.push((*address, info, storage));
    }
    accounts.sort_by_key(|(address, _, _)| *address);
    accounts
}

/// Replays `capture` on the interpreter and with `candidate` (a runtime holding only the new
/// code), and compares.
pub fn verify(capture: &Capture, candidate: &Arc<Runtime>, interpreter: &Arc<Runtime>) -> Verdict {
    let expected = match replay(capture, interpreter) {
        Ok(replayed) => replayed,
        Err(e) => return Verdict::Inconclusive(e),
    };
    if let Some(d) = difference(
        (&capture.result, &capture.state),
        (&expected.result, &expected.state),
    ) {
        return Verdict::Inconclusive(format!(
            "the interpreter's replay differs from the execution (execution vs replay): {d}"
        ));
    }
    let compiled = match replay(capture, candidate) {
        Ok(replayed) => replayed,
        Err(e) => {
            return Verdict::Mismatch {
                difference: e,
                expected: Box::new(expected),
            }
        }
    };
    match difference(
        (&expected.result, &expected.state),
        (&compiled.result, &compiled.state),
    ) {
        None => Verdict::Match,
        Some(d) => Verdict::Mismatch {
            difference: format!("interpreter vs compiled: {d}"),
            expected: Box::new(expected),
        },
    }
}

/// What a transaction did to one account.
#[derive(Debug, PartialEq, Eq)]
struct Effect {
    balance: U256,
    nonce: u64,
    code_hash: B256,
    destroyed: bool,
    storage: BTreeMap<U256, U256>,
}

/// The accounts a transaction touched and what it left in them.
fn effects(state: &EvmState) -> BTreeMap<Address, Effect> {
    state
        .iter()
        .filter(|(_, account)| account.is_touched())
        .map(|(address, account)| {
            let effect = Effect {
                balance: account.info.balance,
                nonce: account.info.nonce,
                code_hash: account.info.code_hash,
                destroyed: account.is_selfdestructed(),
                storage: account
                    .changed_storage_slots()
                    .map(|(slot, value)| (*slot, value.present_value))
                    .collect(),
            };
            (*address, effect)
        })
        .collect()
}

/// The first difference between two executions `a` (the reference) and `b`, in words, each
/// value `a`'s first.
pub fn difference(
    a: (&ExecutionResult<HaltReason>, &EvmState),
    b: (&ExecutionResult<HaltReason>, &EvmState),
) -> Option<String> {
    let ((ra, sa), (rb, sb)) = (a, b);
    let outcome = |r: &ExecutionResult<HaltReason>| match r {
        ExecutionResult::Success { reason, .. } => format!("success ({reason:?})"),
        ExecutionResult::Revert { .. } => "revert".to_owned(),
        ExecutionResult::Halt { reason, .. } => format!("halt ({reason:?})"),
    };
    if std::mem::discriminant(ra) != std::mem::discriminant(rb) || outcome(ra) != outcome(rb) {
        return Some(format!("outcome {} vs {}", outcome(ra), outcome(rb)));
    }
    if ra.tx_gas_used() != rb.tx_gas_used() {
        return Some(format!(
            "gas used {} vs {}",
            ra.tx_gas_used(),
            rb.tx_gas_used()
        ));
    }
    if ra.gas() != rb.gas() {
        return Some(format!("gas {:?} vs {:?}", ra.gas(), rb.gas()));
    }
    if ra.output() != rb.output() {
        return Some(format!(
            "output {} vs {}",
            ra.output().cloned().unwrap_or_default(),
            rb.output().cloned().unwrap_or_default()
        ));
    }
    if ra.logs() != rb.logs() {
        return Some(format!(
            "logs ({} entries) vs ({} entries), first difference at {}",
            ra.logs().len(),
            rb.logs().len(),
            ra.logs()
                .iter()
                .zip(rb.logs())
                .position(|(x, y)| x != y)
                .unwrap_or(ra.logs().len().min(rb.logs().len()))
        ));
    }
    let (ea, eb) = (effects(sa), effects(sb));
    let addresses: BTreeSet<&Address> = ea.keys().chain(eb.keys()).collect();
    for address in addresses {
        match (ea.get(address), eb.get(address)) {
            (Some(x), Some(y)) if x == y => {}
            (Some(x), Some(y)) => {
                let slots: BTreeSet<&U256> = x.storage.keys().chain(y.storage.keys()).collect();
                for slot in slots {
                    let (vx, vy) = (x.storage.get(slot), y.storage.get(slot));
                    if vx != vy {
                        return Some(format!(
                            "account {address} slot {slot:#x}: {vx:?} vs {vy:?}"
                        ));
                    }
                }
                return Some(format!("account {address}: {x:?} vs {y:?}"));
            }
            (x, y) => {
                return Some(format!(
                    "account {address} touched: {} vs {}",
                    x.is_some(),
                    y.is_some()
                ))
            }
        }
    }
    None
}

/// The state-test name of a fork.
fn fork_name(spec: SpecId) -> &'static str {
    use SpecId::*;
    match spec {
        FRONTIER => "Frontier",
        HOMESTEAD => "Homestead",
        TANGERINE => "EIP150",
        SPURIOUS_DRAGON => "EIP158",
        BYZANTIUM => "Byzantium",
        PETERSBURG => "ConstantinopleFix",
        ISTANBUL => "Istanbul",
        BERLIN => "Berlin",
        LONDON => "London",
        MERGE => "Merge",
        SHANGHAI => "Shanghai",
        CANCUN => "Cancun",
        PRAGUE => "Prague",
        OSAKA => "Osaka",
        _ => "Amsterdam",
    }
}

fn hex_u(v: impl std::fmt::LowerHex) -> String {
    format!("{v:#x}")
}

/// Writes a state test that reproduces a mismatch: the recorded transaction on the state it
/// read, expecting the interpreter's post-state root and logs. `kiln statetest` on it passes in
/// interpreter mode and fails on the code that mismatched. Returns the file written.
pub fn write_reproducer(
    dir: &Path,
    key: CodeKey,
    capture: &Capture,
    expected: &ResultAndState<HaltReason>,
    difference: &str,
) -> std::io::Result<PathBuf> {
    let accounts = pre_accounts(capture);
    let mut pre = Map::new();
    let mut cache = CacheState::new();
    for (address, info, storage) in &accounts {
        let code: Bytes = info
            .code
            .as_ref()
            .map(|c| c.original_bytes())
            .unwrap_or_default();
        let slots: Map<String, Value> = storage
            .iter()
            .filter(|(_, v)| !v.is_zero())
            .map(|(k, v)| (hex_u(k), Value::String(hex_u(v))))
            .collect();
        pre.insert(
            address.to_string(),
            json!({
                "balance": hex_u(info.balance),
                "nonce": hex_u(info.nonce),
                "code": code.to_string(),
                "storage": slots,
            }),
        );
        cache.insert_account_with_storage(
            *address,
            info.clone(),
            storage.iter().map(|(k, v)| (*k, *v)).collect(),
        );
    }
    // The post-state root over the same accounts, with the interpreter's changes applied.
    let mut state = State::builder()
        .with_cached_prestate(cache)
        .with_bundle_update()
        .build();
    state.commit(expected.state.clone());
    let post_root = roots::state_root(&state.cache);
    let logs_hash = roots::logs_hash(expected.result.logs());

    let (block, tx) = (&capture.block, &capture.tx);
    let mut env = json!({
        "currentCoinbase": block.beneficiary.to_string(),
        "currentDifficulty": hex_u(block.difficulty),
        "currentGasLimit": hex_u(block.gas_limit),
        "currentNumber": hex_u(block.number),
        "currentTimestamp": hex_u(block.timestamp),
        "currentBaseFee": hex_u(block.basefee),
        "currentChainID": hex_u(capture.cfg.chain_id),
    });
    if let Some(random) = block.prevrandao {
        env["currentRandom"] = Value::String(random.to_string());
    }
    if let Some(blob) = &block.blob_excess_gas_and_price {
        env["currentExcessBlobGas"] = Value::String(hex_u(blob.excess_blob_gas));
    }
    let mut transaction = json!({
        "data": [tx.data.to_string()],
        "gasLimit": [hex_u(tx.gas_limit)],
        "value": [hex_u(tx.value)],
        "nonce": hex_u(tx.nonce),
        "to": tx.kind.to().map(|a| a.to_string()).unwrap_or_default(),
        "sender": tx.caller.to_string(),
        "secretKey": B256::ZERO.to_string(),
    });
    if tx.tx_type >= 2 {
        transaction["maxFeePerGas"] = Value::String(hex_u(tx.gas_price));
        transaction["maxPriorityFeePerGas"] =
            Value::String(hex_u(tx.gas_priority_fee.unwrap_or_default()));
    } else {
        transaction["gasPrice"] = Value::String(hex_u(tx.gas_price));
    }
    if tx.tx_type >= 1 {
        transaction["accessLists"] = json!([tx.access_list]);
    }
    if tx.tx_type == 3 {
        transaction["blobVersionedHashes"] = json!(tx.blob_hashes);
        transaction["maxFeePerBlobGas"] = Value::String(hex_u(tx.max_fee_per_blob_gas));
    }
    let name = format!("kiln_mismatch_{}_{}", key.0, fork_name(key.1));
    let test = json!({
        name.clone(): {
            "_info": {
                "comment": format!(
                    "kiln: compiled code for {} ({:?}) disagreed with the interpreter on this transaction: {difference}",
                    key.0, key.1
                ),
            },
            "env": env,
            "pre": pre,
            "transaction": transaction,
            "post": {
                fork_name(key.1): [{
                    "hash": post_root.to_string(),
                    "logs": logs_hash.to_string(),
                    "indexes": { "data": 0, "gas": 0, "value": 0 },
                    "txbytes": "0x",
                }],
            },
        }
    });
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{name}.json"));
    let bytes = serde_json::to_vec_pretty(&test).map_err(std::io::Error::other)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, &bytes)?;
    tmp.persist(&path).map_err(|e| e.error)?;
    Ok(path)
}
