//! Consensus checks of a post-merge (Cancun) block: the header on its own, against its parent,
//! the body against the header before execution, and what execution produced after it.

use crate::{
    decode::EthBlock,
    error::{Field, Reject},
};
use alloy_consensus::{
    proofs::{calculate_receipt_root, calculate_transaction_root, calculate_withdrawals_root},
    Header, ReceiptEnvelope, Transaction, TxReceipt, EMPTY_OMMER_ROOT_HASH,
};
use alloy_eips::{eip1559::BaseFeeParams, eip4844::DATA_GAS_PER_BLOB, eip7840::BlobParams};
use alloy_primitives::{Bloom, B256};
use std::fmt::Display;

/// The largest gas limit a header may carry (2^63 - 1).
pub const MAX_GAS_LIMIT: u64 = i64::MAX as u64;
/// The smallest gas limit a header may carry.
pub const MIN_GAS_LIMIT: u64 = 5000;
/// The largest `extraData`.
pub const MAX_EXTRA_DATA: usize = 32;
/// A gas limit may move by less than the parent's divided by this.
pub const GAS_LIMIT_BOUND_DIVISOR: u64 = 1024;

fn mismatch(field: Field, expected: impl Display, got: impl Display) -> Reject {
    Reject::Header {
        field,
        expected: expected.to_string(),
        got: got.to_string(),
    }
}

fn check<T: PartialEq + Display>(field: Field, expected: T, got: T) -> Result<(), Reject> {
    if expected == got {
        Ok(())
    } else {
        Err(mismatch(field, expected, got))
    }
}

fn present<T: Copy>(field: Field, value: Option<T>) -> Result<T, Reject> {
    value.ok_or_else(|| mismatch(field, "present", "absent"))
}

/// Checks that need only the header: sizes, limits, and the post-merge constants.
pub fn header_standalone(header: &Header) -> Result<(), Reject> {
    if header.extra_data.len() > MAX_EXTRA_DATA {
        return Err(mismatch(
            Field::ExtraData,
            format!("at most {MAX_EXTRA_DATA} bytes"),
            format!("{} bytes", header.extra_data.len()),
        ));
    }
    if header.gas_limit > MAX_GAS_LIMIT {
        return Err(mismatch(
            Field::GasLimitTooBig,
            format!("at most {MAX_GAS_LIMIT}"),
            header.gas_limit,
        ));
    }
    if header.gas_limit < MIN_GAS_LIMIT {
        return Err(mismatch(
            Field::GasLimit,
            format!("at least {MIN_GAS_LIMIT}"),
            header.gas_limit,
        ));
    }
    if header.gas_used > header.gas_limit {
        return Err(mismatch(
            Field::GasUsedOverLimit,
            format!("at most the gas limit {}", header.gas_limit),
            header.gas_used,
        ));
    }
    check(Field::Ommers, EMPTY_OMMER_ROOT_HASH, header.ommers_hash)?;
    check(Field::Difficulty, Default::default(), header.difficulty)?;
    check(Field::Nonce, Default::default(), header.nonce)?;
    present(Field::BaseFee, header.base_fee_per_gas)?;
    present(Field::WithdrawalsRoot, header.withdrawals_root)?;
    let blob_gas_used = present(Field::BlobGasUsed, header.blob_gas_used)?;
    present(Field::ExcessBlobGas, header.excess_blob_gas)?;
    present(
        Field::ParentBeaconBlockRoot,
        header.parent_beacon_block_root,
    )?;
    let max = BlobParams::cancun().max_blob_gas_per_block();
    if blob_gas_used > max || blob_gas_used % DATA_GAS_PER_BLOB != 0 {
        return Err(mismatch(
            Field::BlobGasUsed,
            format!("a multiple of {DATA_GAS_PER_BLOB} up to {max}"),
            blob_gas_used,
        ));
    }
    Ok(())
}

/// Checks of a header against its parent: number, timestamp, gas limit, base fee and excess
/// blob gas.
pub fn header_against_parent(header: &Header, parent: &Header) -> Result<(), Reject> {
    check(Field::Number, parent.number + 1, header.number)?;
    if header.timestamp <= parent.timestamp {
        return Err(mismatch(
            Field::Timestamp,
            format!("after the parent's {}", parent.timestamp),
            header.timestamp,
        ));
    }
    let bound = parent.gas_limit / GAS_LIMIT_BOUND_DIVISOR;
    if header.gas_limit.abs_diff(parent.gas_limit) >= bound {
        return Err(mismatch(
            Field::GasLimit,
            format!("within {bound} of the parent's {}", parent.gas_limit),
            header.gas_limit,
        ));
    }
    let base_fee = present(
        Field::BaseFee,
        parent.next_block_base_fee(BaseFeeParams::ethereum()),
    )?;
    if header.base_fee_per_gas != Some(base_fee) {
        return Err(mismatch(
            Field::BaseFee,
            base_fee,
            display_opt(header.base_fee_per_gas),
        ));
    }
    let excess = parent
        .next_block_excess_blob_gas(BlobParams::cancun())
        .unwrap_or_default();
    if header.excess_blob_gas != Some(excess) {
        return Err(mismatch(
            Field::ExcessBlobGas,
            excess,
            display_opt(header.excess_blob_gas),
        ));
    }
    Ok(())
}

fn display_opt<T: Display>(value: Option<T>) -> String {
    value.map_or_else(|| "absent".to_owned(), |v| v.to_string())
}

/// Checks of the body against the header before execution: uncles, withdrawals root, and the
/// blob gas the transactions declare. The transactions root is checked after execution
/// ([`transactions_root`]): the fixtures' invalid blocks carry roots over their valid
/// transactions only, and name the invalid transaction's fault as the reason.
pub fn body(block: &EthBlock) -> Result<(), Reject> {
    let header = &block.header;
    if !block.body.ommers.is_empty() {
        return Err(mismatch(
            Field::Ommers,
            "no uncles",
            format!("{} uncles", block.body.ommers.len()),
        ));
    }
    let withdrawals = block
        .body
        .withdrawals
        .as_ref()
        .ok_or(Reject::MissingWithdrawals)?;
    check(
        Field::WithdrawalsRoot,
        calculate_withdrawals_root(withdrawals),
        header.withdrawals_root.unwrap_or_default(),
    )?;
    let blob_gas: u64 = block
        .body
        .transactions
        .iter()
        .filter_map(|tx| tx.blob_gas_used())
        .sum();
    check(
        Field::BlobGasUsed,
        blob_gas,
        header.blob_gas_used.unwrap_or_default(),
    )?;
    Ok(())
}

/// Checks the header's transactions root against the body's transactions.
pub fn transactions_root(block: &EthBlock) -> Result<(), Reject> {
    check(
        Field::TransactionsRoot,
        calculate_transaction_root(&block.body.transactions),
        block.header.transactions_root,
    )
}

/// What a block's execution produced, to check against its header.
#[derive(Debug)]
pub struct ExecutionOutcome<'a> {
    /// The receipts.
    pub receipts: &'a [ReceiptEnvelope],
    /// Gas used by the block.
    pub gas_used: u64,
    /// Blob gas used by the block.
    pub blob_gas_used: u64,
}

/// Checks of the header against execution: gas used, blob gas used, receipts root and logs
/// bloom (the state root is checked by [`state_root`] once computed).
pub fn post_execution(header: &Header, outcome: &ExecutionOutcome<'_>) -> Result<(), Reject> {
    check(Field::GasUsed, outcome.gas_used, header.gas_used)?;
    check(
        Field::BlobGasUsed,
        outcome.blob_gas_used,
        header.blob_gas_used.unwrap_or_default(),
    )?;
    check(
        Field::ReceiptsRoot,
        calculate_receipt_root(outcome.receipts),
        header.receipts_root,
    )?;
    let bloom = outcome
        .receipts
        .iter()
        .fold(Bloom::ZERO, |acc, r| acc | r.bloom());
    check(Field::LogsBloom, bloom, header.logs_bloom)
}

/// Checks the header's state root against the computed one.
pub fn state_root(header: &Header, computed: B256) -> Result<(), Reject> {
    check(Field::StateRoot, computed, header.state_root)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parent() -> Header {
        Header {
            number: 1,
            timestamp: 10,
            gas_limit: 30_000_000,
            gas_used: 15_000_000,
            base_fee_per_gas: Some(7),
            excess_blob_gas: Some(0),
            blob_gas_used: Some(0),
            ..Default::default()
        }
    }

    fn child() -> Header {
        Header {
            number: 2,
            timestamp: 22,
            gas_limit: 30_000_000,
            base_fee_per_gas: Some(7),
            excess_blob_gas: Some(0),
            blob_gas_used: Some(0),
            withdrawals_root: Some(B256::ZERO),
            parent_beacon_block_root: Some(B256::ZERO),
            ommers_hash: EMPTY_OMMER_ROOT_HASH,
            ..Default::default()
        }
    }

    fn field(r: Result<(), Reject>) -> Option<Field> {
        match r {
            Err(Reject::Header { field, .. }) => Some(field),
            Ok(()) => None,
            Err(e) => panic!("unexpected {e}"),
        }
    }

    #[test]
    fn accepts_a_good_child() {
        assert_eq!(field(header_standalone(&child())), None);
        assert_eq!(field(header_against_parent(&child(), &parent())), None);
    }

    #[test]
    fn names_the_wrong_field() {
        let mut h = child();
        h.number = 3;
        assert_eq!(
            field(header_against_parent(&h, &parent())),
            Some(Field::Number)
        );
        let mut h = child();
        h.timestamp = 10;
        assert_eq!(
            field(header_against_parent(&h, &parent())),
            Some(Field::Timestamp)
        );
        let mut h = child();
        h.gas_limit = 30_000_000 + 30_000_000 / 1024;
        assert_eq!(
            field(header_against_parent(&h, &parent())),
            Some(Field::GasLimit)
        );
        let mut h = child();
        h.base_fee_per_gas = Some(8);
        assert_eq!(
            field(header_against_parent(&h, &parent())),
            Some(Field::BaseFee)
        );
        let mut h = child();
        h.extra_data = vec![0; 33].into();
        assert_eq!(field(header_standalone(&h)), Some(Field::ExtraData));
        let mut h = child();
        h.difficulty = alloy_primitives::U256::from(1);
        assert_eq!(field(header_standalone(&h)), Some(Field::Difficulty));
    }
}
