//! Reading state-test files, including the benchmark variants the stock types can't parse.
//!
//! Three shapes are accepted:
//! - the GeneralStateTests format (`revm_statetest_types::TestUnit`);
//! - the same without `post` (benchmark inputs): every (data, gas, value) combination runs
//!   and nothing is compared;
//! - `transaction` as a list of complete transactions executed in order on one state
//!   (`bench/contracts/`), also without `post`.

use std::{collections::BTreeMap, path::Path};

use alloy_primitives::{Address, Bytes, B256, U256};
use revm::{
    context::TxEnv,
    context_interface::transaction::{AccessList, TransactionType},
    primitives::{AddressMap, TxKind},
};
use revm_statetest_types::{
    deserialize_maybe_empty, recover_address, AccountInfo, Env, TestSuite, TestUnit,
    TransactionParts,
};
use serde::Deserialize;
use serde_json::{Map, Value};

/// One named test of a file, or why it could not be parsed.
#[derive(Debug)]
pub struct LoadedUnit {
    /// Key of the test in the file.
    pub name: String,
    /// The parsed test, or a parse error naming the problem.
    pub unit: Result<Unit, String>,
}

/// A parsed test.
#[derive(Debug)]
pub enum Unit {
    /// A GeneralStateTests unit; `post` may be empty for benchmark inputs.
    Standard(TestUnit),
    /// Transactions run in order on the same state. `unit` carries `env` and `pre` only
    /// (empty `post` and `transaction`) so the stock state and block builders can be reused.
    Sequence {
        /// Environment and pre-state.
        unit: TestUnit,
        /// The transactions, in execution order.
        txs: Vec<SequenceTx>,
    },
}

/// Parses a state-test file.
///
/// The error, if any, concerns the whole file (unreadable, not JSON, not an object of tests);
/// problems of a single test are reported in its [`LoadedUnit`] so the others still run.
pub fn load_file(path: &Path) -> Result<Vec<LoadedUnit>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read file: {e}"))?;

    // Fast path for the common case; the generic path below costs a second parse.
    if let Ok(suite) = serde_json::from_slice::<TestSuite>(&bytes) {
        return Ok(suite
            .0
            .into_iter()
            .map(|(name, unit)| LoadedUnit {
                name,
                unit: Ok(Unit::Standard(unit)),
            })
            .collect());
    }

    let tests: Map<String, Value> = serde_json::from_slice(&bytes).map_err(|e| {
        if e.is_eof() {
            format!("invalid JSON (truncated file?): {e}")
        } else if e.is_syntax() {
            format!("invalid JSON: {e}")
        } else {
            format!("not a state-test file (expected an object of named tests): {e}")
        }
    })?;
    Ok(tests
        .into_iter()
        .map(|(name, value)| LoadedUnit {
            unit: parse_unit(value),
            name,
        })
        .collect())
}

fn parse_unit(mut value: Value) -> Result<Unit, String> {
    let obj = value.as_object_mut().ok_or("test is not a JSON object")?;
    if obj.get("transaction").is_some_and(Value::is_array) {
        let seq: SequenceUnit =
            serde_json::from_value(value).map_err(|e| format!("invalid test: {e}"))?;
        return Ok(seq.into_unit());
    }
    obj.entry("post")
        .or_insert_with(|| Value::Object(Map::new()));
    serde_json::from_value(value)
        .map(Unit::Standard)
        .map_err(|e| format!("invalid test: {e}"))
}

/// A test whose `transaction` is a list of full transactions.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SequenceUnit {
    #[serde(default, rename = "_info")]
    info: Option<Value>,
    env: Env,
    pre: AddressMap<AccountInfo>,
    transaction: Vec<SequenceTx>,
}

impl SequenceUnit {
    fn into_unit(self) -> Unit {
        let unit = TestUnit {
            info: self.info,
            env: self.env,
            pre: self.pre,
            post: BTreeMap::new(),
            transaction: TransactionParts::default(),
            out: None,
        };
        Unit::Sequence {
            unit,
            txs: self.transaction,
        }
    }
}

/// One transaction of a sequence. Unknown fields are rejected rather than silently ignored,
/// so a fixture that needs, say, blobs fails loudly instead of running as something else.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SequenceTx {
    #[serde(default)]
    data: Bytes,
    gas_limit: U256,
    gas_price: Option<U256>,
    max_fee_per_gas: Option<U256>,
    max_priority_fee_per_gas: Option<U256>,
    #[serde(default)]
    nonce: U256,
    /// Wins over `secret_key`: state tests carry no signature anyway.
    sender: Option<Address>,
    secret_key: Option<B256>,
    #[serde(default, deserialize_with = "deserialize_maybe_empty")]
    to: Option<Address>,
    #[serde(default)]
    value: U256,
    access_list: Option<AccessList>,
    chain_id: Option<U256>,
}

impl SequenceTx {
    /// Builds the revm transaction; the type is inferred from the fee fields like the stock
    /// state-test types do.
    pub fn tx_env(&self) -> Result<TxEnv, String> {
        let caller = match (self.sender, self.secret_key) {
            (Some(sender), _) => sender,
            (None, Some(key)) => {
                recover_address(key.as_slice()).ok_or_else(|| format!("invalid secretKey {key}"))?
            }
            (None, None) => return Err("transaction has neither `sender` nor `secretKey`".into()),
        };
        let tx_type = if self.max_fee_per_gas.is_some() {
            TransactionType::Eip1559
        } else if self.access_list.is_some() {
            TransactionType::Eip2930
        } else {
            TransactionType::Legacy
        };
        Ok(TxEnv {
            tx_type: tx_type as u8,
            caller,
            gas_limit: self.gas_limit.saturating_to(),
            gas_price: self
                .gas_price
                .or(self.max_fee_per_gas)
                .unwrap_or_default()
                .saturating_to(),
            gas_priority_fee: self.max_priority_fee_per_gas.map(|fee| fee.saturating_to()),
            kind: self.to.map_or(TxKind::Create, TxKind::Call),
            value: self.value,
            data: self.data.clone(),
            nonce: u64::try_from(self.nonce)
                .map_err(|_| format!("nonce {} overflows u64", self.nonce))?,
            chain_id: Some(self.chain_id.map_or(1, |id| id.saturating_to())),
            access_list: self.access_list.clone().unwrap_or_default(),
            ..TxEnv::default()
        })
    }
}
