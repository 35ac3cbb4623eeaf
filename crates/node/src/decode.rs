//! Blocks from RLP: decoded with alloy-consensus, hashed, and their senders recovered in
//! parallel.

use crate::error::Reject;
use alloy_consensus::{transaction::SignerRecoverable, Block, TxEnvelope};
use alloy_primitives::{hex, Address, B256};
use alloy_rlp::Decodable;
use rayon::prelude::*;

/// An Ethereum block of signed transactions.
pub type EthBlock = Block<TxEnvelope>;

/// A decoded block: its hash, and its senders or the first transaction whose signature fails.
#[derive(Debug)]
pub struct DecodedBlock {
    /// The block.
    pub block: EthBlock,
    /// Its hash (keccak256 of the RLP header).
    pub hash: B256,
    /// The sender of each transaction, or why one could not be recovered.
    pub senders: Result<Vec<Address>, Reject>,
}

/// Decodes a block from hex-encoded RLP; the whole input must be one block.
pub fn decode_block_hex(rlp_hex: &str) -> Result<EthBlock, Reject> {
    decode_block(&hex::decode(rlp_hex)?)
}

/// Decodes a block from RLP; the whole input must be one block.
pub fn decode_block(rlp: &[u8]) -> Result<EthBlock, Reject> {
    let mut buf = rlp;
    let block = EthBlock::decode(&mut buf)?;
    if !buf.is_empty() {
        return Err(Reject::TrailingBytes(buf.len()));
    }
    Ok(block)
}

/// Recovers every transaction's sender (EIP-2 low-s enforced), in parallel.
pub fn recover_senders(block: &EthBlock) -> Result<Vec<Address>, Reject> {
    block
        .body
        .transactions
        .par_iter()
        .enumerate()
        .map(|(index, tx)| {
            tx.recover_signer().map_err(|e| Reject::Signature {
                index,
                reason: e.to_string(),
            })
        })
        .collect()
}

/// Decodes a block from hex-encoded RLP and recovers its senders.
pub fn decode_and_recover(rlp_hex: &str) -> Result<DecodedBlock, Reject> {
    decode_and_recover_rlp(&hex::decode(rlp_hex)?)
}

/// Decodes a block from RLP and recovers its senders.
pub fn decode_and_recover_rlp(rlp: &[u8]) -> Result<DecodedBlock, Reject> {
    let block = decode_block(rlp)?;
    let hash = block.header.hash_slow();
    let senders = recover_senders(&block);
    Ok(DecodedBlock {
        block,
        hash,
        senders,
    })
}

/// [`decode_and_recover_rlp`] for every block of a chain, in parallel.
pub fn decode_all_rlp(rlps: &[alloy_primitives::Bytes]) -> Vec<Result<DecodedBlock, Reject>> {
    rlps.par_iter().map(|r| decode_and_recover_rlp(r)).collect()
}

/// [`decode_and_recover`] for every block of a test, in parallel.
pub fn decode_all<'a>(
    rlps: impl IntoParallelIterator<Item = &'a str>,
) -> Vec<Result<DecodedBlock, Reject>> {
    rlps.into_par_iter().map(decode_and_recover).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_input_is_a_rejection() {
        assert!(matches!(decode_block_hex("0xzz"), Err(Reject::Hex(_))));
        assert!(matches!(decode_block_hex("0x"), Err(Reject::Rlp(_))));
        assert!(matches!(decode_block_hex("0xc0"), Err(Reject::Rlp(_))));
        assert!(matches!(decode_block_hex("0xf9ffff"), Err(Reject::Rlp(_))));
    }
}
