//! Why an import fails: [`ImportError`] for inputs the importer cannot use at all, and
//! [`BlockError`] for a block the node rejects, with the [`Reject`] reason and the fixture
//! exception names it stands for.

use alloy_primitives::B256;
use revm::context_interface::result::InvalidTransaction;
use std::path::PathBuf;

/// An input the importer cannot use (as opposed to a block it rejects).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A file or folder could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file is not blockchain-test JSON.
    #[error("parsing {path}: {source}")]
    Json {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// The paths hold no `*.json` file.
    #[error("no *.json files found in {0}")]
    NoFiles(String),
    /// The genesis of a test is unusable.
    #[error("genesis: {0}")]
    Genesis(#[from] GenesisError),
    /// The hot-code service's settings are invalid.
    #[error(transparent)]
    Config(#[from] kiln_exex::ConfigError),
}

/// What is wrong with a test's genesis.
#[derive(Debug, thiserror::Error)]
pub enum GenesisError {
    /// `genesisRLP` does not decode.
    #[error("genesis RLP: {0}")]
    Rlp(#[from] alloy_rlp::Error),
    /// The decoded genesis header's hash is not `genesisBlockHeader.hash`.
    #[error("genesis hash {computed} differs from the fixture's {expected}")]
    Hash {
        /// Hash of the decoded header.
        computed: B256,
        /// The fixture's.
        expected: B256,
    },
    /// The genesis file's fork schedule is not one kiln runs.
    #[error(transparent)]
    Schedule(#[from] crate::spec::UnsupportedSchedule),
    /// The state root of `pre` is not the genesis header's.
    #[error("state root of pre {computed} differs from the genesis header's {expected}")]
    StateRoot {
        /// Root of `pre`.
        computed: B256,
        /// The header's.
        expected: B256,
    },
}

/// A block the node rejected: where it is and why.
#[derive(Debug, thiserror::Error)]
#[error("block {index} ({}): {reason}", describe(*number, *hash))]
pub struct BlockError {
    /// Position of the block in the fixture's `blocks`.
    pub index: usize,
    /// The header's number, when the block decoded.
    pub number: Option<u64>,
    /// The block hash, when the block decoded.
    pub hash: Option<B256>,
    /// Why it was rejected.
    #[source]
    pub reason: Reject,
}

fn describe(number: Option<u64>, hash: Option<B256>) -> String {
    match (number, hash) {
        (Some(n), Some(h)) => format!("#{n} {h}"),
        _ => "undecodable".to_owned(),
    }
}

/// A header field the node checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// `number` (parent's + 1).
    Number,
    /// `timestamp` (after the parent's).
    Timestamp,
    /// `gasLimit` (within 1/1024 of the parent's, at least 5000).
    GasLimit,
    /// `gasLimit` above 2^63 - 1.
    GasLimitTooBig,
    /// `gasUsed` (what execution used).
    GasUsed,
    /// `gasUsed` above `gasLimit`.
    GasUsedOverLimit,
    /// `baseFeePerGas` (EIP-1559 from the parent).
    BaseFee,
    /// `extraData` (at most 32 bytes).
    ExtraData,
    /// `transactionsRoot`.
    TransactionsRoot,
    /// `receiptsRoot`.
    ReceiptsRoot,
    /// `logsBloom`.
    LogsBloom,
    /// `stateRoot`.
    StateRoot,
    /// `withdrawalsRoot`.
    WithdrawalsRoot,
    /// `ommersHash` / uncles (none after Paris).
    Ommers,
    /// `difficulty` (0 after Paris).
    Difficulty,
    /// `nonce` (0 after Paris).
    Nonce,
    /// `blobGasUsed` (EIP-4844).
    BlobGasUsed,
    /// `excessBlobGas` (EIP-4844, from the parent).
    ExcessBlobGas,
    /// `parentBeaconBlockRoot` (EIP-4788).
    ParentBeaconBlockRoot,
}

impl Field {
    /// The fixture exception a wrong value of this field raises.
    pub fn exception(self) -> &'static str {
        self.exceptions()[0]
    }

    fn exceptions(self) -> &'static [&'static str] {
        match self {
            Self::Number => &["BlockException.INVALID_BLOCK_NUMBER"],
            Self::Timestamp => &["BlockException.INVALID_BLOCK_TIMESTAMP_OLDER_THAN_PARENT"],
            Self::GasLimit => &["BlockException.INVALID_GASLIMIT"],
            Self::GasLimitTooBig => &["BlockException.GASLIMIT_TOO_BIG"],
            Self::GasUsed => &["BlockException.INVALID_GAS_USED"],
            Self::GasUsedOverLimit => &["BlockException.GAS_USED_OVERFLOW"],
            Self::BaseFee => &["BlockException.INVALID_BASEFEE_PER_GAS"],
            Self::ExtraData => &["BlockException.EXTRA_DATA_TOO_BIG"],
            Self::TransactionsRoot => &["BlockException.INVALID_TRANSACTIONS_ROOT"],
            Self::ReceiptsRoot => &["BlockException.INVALID_RECEIPTS_ROOT"],
            Self::LogsBloom => &["BlockException.INVALID_LOG_BLOOM"],
            Self::StateRoot => &["BlockException.INVALID_STATE_ROOT"],
            Self::WithdrawalsRoot => &["BlockException.INVALID_WITHDRAWALS_ROOT"],
            Self::Ommers => &["BlockException.IMPORT_IMPOSSIBLE_UNCLES_OVER_PARIS"],
            Self::Difficulty => &["BlockException.IMPORT_IMPOSSIBLE_DIFFICULTY_OVER_PARIS"],
            Self::Nonce => &["BlockException.IMPORT_IMPOSSIBLE_NONCE_OVER_PARIS"],
            Self::BlobGasUsed => &["BlockException.INCORRECT_BLOB_GAS_USED"],
            Self::ExcessBlobGas => &["BlockException.INCORRECT_EXCESS_BLOB_GAS"],
            Self::ParentBeaconBlockRoot => &["BlockException.INVALID_PARENT_BEACON_BLOCK_ROOT"],
        }
    }
}

/// Why a block was rejected.
#[derive(Debug, thiserror::Error)]
pub enum Reject {
    /// The block's hex is malformed.
    #[error("block hex: {0}")]
    Hex(#[from] alloy_primitives::hex::FromHexError),
    /// The block's RLP is malformed.
    #[error("block RLP: {0}")]
    Rlp(#[from] alloy_rlp::Error),
    /// Bytes follow the block's RLP.
    #[error("block RLP: {0} bytes after the block")]
    TrailingBytes(usize),
    /// A post-Shanghai block's body has no withdrawals list.
    #[error("block RLP: the body has no withdrawals list")]
    MissingWithdrawals,
    /// The parent is not a block the node has imported.
    #[error("unknown parent {0}")]
    UnknownParent(B256),
    /// A header field has the wrong value.
    #[error("header field {field:?}: expected {expected}, got {got}")]
    Header {
        /// The field.
        field: Field,
        /// What the node computed or requires.
        expected: String,
        /// What the header holds.
        got: String,
    },
    /// A transaction's signature does not recover a sender.
    #[error("transaction {index}: bad signature: {reason}")]
    Signature {
        /// Index of the transaction in the block.
        index: usize,
        /// The recovery error.
        reason: String,
    },
    /// A transaction is invalid on the block's state (nonce, funds, fees, intrinsic gas...).
    #[error("transaction {index}: {error}")]
    Transaction {
        /// Index of the transaction in the block.
        index: usize,
        /// revm's reason.
        error: InvalidTransaction,
    },
    /// A transaction's gas limit exceeds what the block has left.
    #[error("transaction {index}: gas limit {gas_limit} above the block's remaining {available}")]
    BlockGasExceeded {
        /// Index of the transaction in the block.
        index: usize,
        /// The transaction's gas limit.
        gas_limit: u64,
        /// Gas the block had left.
        available: u64,
    },
    /// Execution failed for another reason (a system call, a database error).
    #[error("execution: {0}")]
    Execution(String),
}

impl Reject {
    /// The fixture exception names this rejection stands for.
    pub fn exceptions(&self) -> &'static [&'static str] {
        match self {
            Self::Hex(_) | Self::Rlp(_) | Self::TrailingBytes(_) => {
                &["BlockException.RLP_STRUCTURES_ENCODING"]
            }
            Self::MissingWithdrawals => &[
                "BlockException.RLP_WITHDRAWALS_NOT_READ",
                "BlockException.RLP_STRUCTURES_ENCODING",
            ],
            Self::UnknownParent(parent) if parent.is_zero() => &[
                "BlockException.UNKNOWN_PARENT_ZERO",
                "BlockException.UNKNOWN_PARENT",
            ],
            Self::UnknownParent(_) => &["BlockException.UNKNOWN_PARENT"],
            Self::Header { field, .. } => field.exceptions(),
            Self::Signature { .. } => &["TransactionException.INVALID_SIGNATURE_VRS"],
            Self::Transaction { error, .. } => tx_exceptions(error),
            Self::BlockGasExceeded { .. } => &["TransactionException.GAS_ALLOWANCE_EXCEEDED"],
            Self::Execution(_) => &["BlockException.SYSTEM_CONTRACT_CALL_FAILED"],
        }
    }

    /// Whether this rejection is one of `expected` (a fixture's `|`-separated alternatives).
    pub fn matches(&self, expected: &[&str]) -> bool {
        self.exceptions().iter().any(|e| expected.contains(e))
    }
}

/// The fixture exception names of a transaction revm refused.
fn tx_exceptions(error: &InvalidTransaction) -> &'static [&'static str] {
    use InvalidTransaction as E;
    match error {
        E::CallGasCostMoreThanGasLimit { .. } | E::GasFloorMoreThanGasLimit { .. } => {
            &["TransactionException.INTRINSIC_GAS_TOO_LOW"]
        }
        E::LackOfFundForMaxFee { .. } | E::OverflowPaymentInTransaction => {
            &["TransactionException.INSUFFICIENT_ACCOUNT_FUNDS"]
        }
        E::GasPriceLessThanBasefee => &["TransactionException.INSUFFICIENT_MAX_FEE_PER_GAS"],
        E::PriorityFeeGreaterThanMaxFee => {
            &["TransactionException.PRIORITY_GREATER_THAN_MAX_FEE_PER_GAS"]
        }
        E::NonceTooLow { .. } => &["TransactionException.NONCE_MISMATCH_TOO_LOW"],
        E::NonceTooHigh { .. } => &["TransactionException.NONCE_MISMATCH_TOO_HIGH"],
        E::NonceOverflowInTransaction => &["TransactionException.NONCE_IS_MAX"],
        E::RejectCallerWithCode => &["TransactionException.SENDER_NOT_EOA"],
        E::CallerGasLimitMoreThanBlock | E::TxGasLimitGreaterThanCap { .. } => {
            &["TransactionException.GAS_ALLOWANCE_EXCEEDED"]
        }
        E::CreateInitCodeSizeLimit => &["TransactionException.INITCODE_SIZE_EXCEEDED"],
        E::InvalidChainId | E::MissingChainId => &["TransactionException.INVALID_CHAINID"],
        E::BlobGasPriceGreaterThanMax { .. } => {
            &["TransactionException.INSUFFICIENT_MAX_FEE_PER_BLOB_GAS"]
        }
        E::EmptyBlobs => &["TransactionException.TYPE_3_TX_ZERO_BLOBS"],
        E::BlobCreateTransaction => &["TransactionException.TYPE_3_TX_CONTRACT_CREATION"],
        E::TooManyBlobs { .. } => {
            &["TransactionException.TYPE_3_TX_MAX_BLOB_GAS_ALLOWANCE_EXCEEDED"]
        }
        E::BlobVersionNotSupported => {
            &["TransactionException.TYPE_3_TX_INVALID_BLOB_VERSIONED_HASH"]
        }
        _ => &["TransactionException.TYPE_NOT_SUPPORTED"],
    }
}
