//! The JSON of Ethereum `BlockchainTests`: a genesis (header, RLP and `pre` state), blocks as RLP
//! with the exception an invalid one must raise, and the expected head and post-state.
//!
//! Block RLP stays a string here: a block whose hex or RLP is malformed is a rejection found at
//! import, never a file that fails to parse.

use alloy_primitives::{Address, Bytes, B256, U256, U64};
use serde::Deserialize;
use std::collections::BTreeMap;

/// One fixture file: tests by name.
pub type TestFile = BTreeMap<String, BlockchainTest>;

/// One blockchain test.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockchainTest {
    /// The genesis header's fields (only its hash and state root are read).
    pub genesis_block_header: GenesisHeader,
    /// The genesis block, RLP-encoded.
    #[serde(rename = "genesisRLP")]
    pub genesis_rlp: Bytes,
    /// The blocks, in the order a consensus client hands them to the node.
    pub blocks: Vec<FixtureBlock>,
    /// The hash of the head once every block is imported.
    pub lastblockhash: B256,
    /// The genesis state.
    pub pre: BTreeMap<Address, FixtureAccount>,
    /// The head's state, account by account.
    #[serde(default)]
    pub post_state: Option<BTreeMap<Address, FixtureAccount>>,
    /// The head's state root, when the post-state is too large to list.
    #[serde(default)]
    pub post_state_hash: Option<B256>,
    /// The fork the test was filled for (`Cancun`).
    pub network: String,
    /// `NoProof` for every test here: no proof-of-work seal is checked.
    #[serde(default)]
    pub seal_engine: Option<String>,
}

/// The genesis header fields the importer checks.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenesisHeader {
    /// The genesis block hash.
    pub hash: B256,
    /// The genesis state root.
    pub state_root: B256,
}

/// One block of a test.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FixtureBlock {
    /// The block, RLP-encoded, as hex (possibly malformed on purpose).
    pub rlp: String,
    /// The exception(s) an invalid block must raise, `|`-separated alternatives
    /// (`TransactionException.INTRINSIC_GAS_TOO_LOW|...`); absent for a valid block.
    #[serde(default)]
    pub expect_exception: Option<String>,
    /// The block number, as the filler wrote it (informational).
    #[serde(default)]
    pub blocknumber: Option<String>,
    /// The chain the filler built the block on (informational).
    #[serde(default)]
    pub chainname: Option<String>,
}

impl FixtureBlock {
    /// The exceptions this block may raise, if it is expected invalid.
    pub fn expected_exceptions(&self) -> Option<Vec<&str>> {
        self.expect_exception
            .as_deref()
            .map(|e| e.split('|').map(str::trim).collect())
    }
}

/// An account of `pre` or `postState`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct FixtureAccount {
    /// Balance in wei.
    pub balance: U256,
    /// Nonce.
    pub nonce: U64,
    /// Runtime bytecode.
    #[serde(default)]
    pub code: Bytes,
    /// Storage slots.
    #[serde(default)]
    pub storage: BTreeMap<U256, U256>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_minimal_test() {
        let json = r#"{"t": {
            "genesisBlockHeader": {"hash": "0x0000000000000000000000000000000000000000000000000000000000000001",
                                   "stateRoot": "0x0000000000000000000000000000000000000000000000000000000000000002"},
            "genesisRLP": "0xc0",
            "blocks": [{"rlp": "0xzz", "expectException": "A.B|C.D"}],
            "lastblockhash": "0x0000000000000000000000000000000000000000000000000000000000000001",
            "pre": {"0x1000000000000000000000000000000000000000": {"balance": "0x01", "nonce": "0x00", "code": "0x", "storage": {"0x01": "0x02"}}},
            "postStateHash": "0x0000000000000000000000000000000000000000000000000000000000000003",
            "network": "Cancun", "sealEngine": "NoProof"}}"#;
        let file: TestFile = serde_json::from_str(json).unwrap();
        let test = &file["t"];
        assert_eq!(
            test.blocks[0].expected_exceptions(),
            Some(vec!["A.B", "C.D"])
        );
        let account = test.pre.values().next().unwrap();
        assert_eq!(account.storage[&U256::from(1)], U256::from(2));
        assert!(test.post_state.is_none());
    }
}
