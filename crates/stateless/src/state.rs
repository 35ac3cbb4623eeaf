//! The parent state as a witness gives it: a [`DatabaseRef`] that reads accounts and slots by
//! walking the witness's trie nodes from the parent's state root, codes by hash and block hashes
//! from the checked ancestor headers; and the post-state root, from the execution's bundle
//! applied to sparse tries of the same nodes. Also the recording wrapper a witness is made with.

use crate::trie::{self, NodeSource, SparseTrie, TrieError};
use alloy_primitives::{keccak256, map::HashMap, Address, B256, U256};
use alloy_trie::{TrieAccount, EMPTY_ROOT_HASH};
use revm::{
    bytecode::Bytecode,
    database::BundleState,
    database_interface::{DBErrorMarker, DatabaseRef},
    primitives::KECCAK_EMPTY,
    state::AccountInfo,
};
use std::{collections::BTreeSet, sync::Mutex};

/// Why the witness's state cannot answer what execution or the post-state root needs.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// An account's path in the account trie.
    #[error("account {address}: {source}")]
    Account {
        /// The account.
        address: Address,
        /// What is missing or wrong.
        source: Box<TrieError>,
    },
    /// A slot's path in an account's storage trie.
    #[error("account {address} slot {slot}: {source}")]
    Storage {
        /// The account.
        address: Address,
        /// The slot.
        slot: U256,
        /// What is missing or wrong.
        source: Box<TrieError>,
    },
    /// An account leaf that is not an account.
    #[error("account {address}: the trie leaf is not an RLP account: {reason}")]
    BadAccount {
        /// The account.
        address: Address,
        /// The decoding error.
        reason: String,
    },
    /// A storage leaf that is not a value.
    #[error("account {address} slot {slot}: the trie leaf is not an RLP value: {reason}")]
    BadSlot {
        /// The account.
        address: Address,
        /// The slot.
        slot: U256,
        /// The decoding error.
        reason: String,
    },
    /// Execution needs a code the witness does not hold.
    #[error("code {0} is not in the witness")]
    MissingCode(B256),
    /// BLOCKHASH asks for a block the witness's headers do not reach.
    #[error("the hash of block {0} (BLOCKHASH) is not proven by the witness's headers")]
    MissingBlockHash(u64),
}

impl DBErrorMarker for StateError {}

/// Reads an account from the account trie rooted at `root`.
pub fn account(
    source: &impl NodeSource,
    root: B256,
    address: Address,
) -> Result<Option<TrieAccount>, StateError> {
    let leaf = trie::get(source, root, keccak256(address).as_slice()).map_err(|source| {
        StateError::Account {
            address,
            source: Box::new(source),
        }
    })?;
    leaf.map(|rlp| {
        alloy_rlp::decode_exact::<TrieAccount>(&rlp).map_err(|e| StateError::BadAccount {
            address,
            reason: e.to_string(),
        })
    })
    .transpose()
}

/// Reads a slot from the storage trie rooted at `root` (zero when absent).
pub fn slot(
    source: &impl NodeSource,
    root: B256,
    address: Address,
    slot: U256,
) -> Result<U256, StateError> {
    let leaf = trie::get(source, root, keccak256(slot.to_be_bytes::<32>()).as_slice()).map_err(
        |source| StateError::Storage {
            address,
            slot,
            source: Box::new(source),
        },
    )?;
    leaf.map(|rlp| {
        alloy_rlp::decode_exact::<U256>(&rlp).map_err(|e| StateError::BadSlot {
            address,
            slot,
            reason: e.to_string(),
        })
    })
    .transpose()
    .map(Option::unwrap_or_default)
}

/// A block's parent state, from a witness.
#[derive(Debug)]
pub struct WitnessDb<'a, S> {
    nodes: &'a S,
    root: B256,
    codes: &'a HashMap<B256, Bytecode>,
    block_hashes: &'a HashMap<u64, B256>,
    /// Accounts read so far (storage reads need their storage root).
    accounts: Mutex<HashMap<Address, Option<TrieAccount>>>,
    /// The first error returned to the EVM, which reports its own wrapping of it.
    error: Mutex<Option<StateError>>,
}

impl<'a, S: NodeSource> WitnessDb<'a, S> {
    /// The state under `root` (the parent's state root) in `nodes`, with `codes` by hash and
    /// the proven `block_hashes`.
    pub fn new(
        nodes: &'a S,
        root: B256,
        codes: &'a HashMap<B256, Bytecode>,
        block_hashes: &'a HashMap<u64, B256>,
    ) -> Self {
        Self {
            nodes,
            root,
            codes,
            block_hashes,
            accounts: Mutex::default(),
            error: Mutex::default(),
        }
    }

    /// The first error a read returned, if any.
    pub fn take_error(&self) -> Option<StateError> {
        self.error.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn note<T>(&self, result: Result<T, StateError>) -> Result<T, StateError> {
        if let Err(e) = &result {
            let mut slot = self.error.lock().unwrap_or_else(|e| e.into_inner());
            slot.get_or_insert_with(|| e.clone());
        }
        result
    }

    fn trie_account(&self, address: Address) -> Result<Option<TrieAccount>, StateError> {
        if let Some(known) = self
            .accounts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&address)
        {
            return Ok(*known);
        }
        let found = account(self.nodes, self.root, address)?;
        self.accounts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(address, found);
        Ok(found)
    }
}

impl<S: NodeSource> DatabaseRef for WitnessDb<'_, S> {
    type Error = StateError;

    fn basic_ref(&self, address: Address) -> Result<Option<AccountInfo>, Self::Error> {
        self.note(self.trie_account(address).map(|found| {
            found.map(|a| AccountInfo {
                balance: a.balance,
                nonce: a.nonce,
                code_hash: a.code_hash,
                code: None,
                account_id: None,
            })
        }))
    }

    fn code_by_hash_ref(&self, code_hash: B256) -> Result<Bytecode, Self::Error> {
        if code_hash == KECCAK_EMPTY {
            return Ok(Bytecode::default());
        }
        self.note(
            self.codes
                .get(&code_hash)
                .cloned()
                .ok_or(StateError::MissingCode(code_hash)),
        )
    }

    fn storage_ref(&self, address: Address, index: U256) -> Result<U256, Self::Error> {
        let value = self.trie_account(address).and_then(|found| match found {
            Some(a) if a.storage_root != EMPTY_ROOT_HASH => {
                slot(self.nodes, a.storage_root, address, index)
            }
            _ => Ok(U256::ZERO),
        });
        self.note(value)
    }

    fn block_hash_ref(&self, number: u64) -> Result<B256, Self::Error> {
        self.note(
            self.block_hashes
                .get(&number)
                .copied()
                .ok_or(StateError::MissingBlockHash(number)),
        )
    }
}

/// What a block's execution asked of its parent state.
#[derive(Clone, Debug, Default)]
pub struct Reads {
    /// Accounts.
    pub accounts: BTreeSet<Address>,
    /// Storage slots.
    pub slots: BTreeSet<(Address, U256)>,
    /// Codes, by hash.
    pub codes: BTreeSet<B256>,
    /// Block hashes, by number.
    pub block_hashes: BTreeSet<u64>,
}

/// A [`DatabaseRef`] that notes every read of the one it wraps.
#[derive(Debug)]
pub struct RecordingDb<DB> {
    inner: DB,
    reads: Mutex<Reads>,
}

impl<DB> RecordingDb<DB> {
    /// Records the reads of `inner`.
    pub fn new(inner: DB) -> Self {
        Self {
            inner,
            reads: Mutex::default(),
        }
    }

    /// What was read.
    pub fn reads(&self) -> Reads {
        self.reads.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn record(&self, f: impl FnOnce(&mut Reads)) {
        f(&mut self.reads.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

impl<DB: DatabaseRef> DatabaseRef for RecordingDb<DB> {
    type Error = DB::Error;

    fn basic_ref(&self, address: Address) -> Result<Option<AccountInfo>, Self::Error> {
        self.record(|r| {
            r.accounts.insert(address);
        });
        self.inner.basic_ref(address)
    }

    fn code_by_hash_ref(&self, code_hash: B256) -> Result<Bytecode, Self::Error> {
        self.record(|r| {
            r.codes.insert(code_hash);
        });
        self.inner.code_by_hash_ref(code_hash)
    }

    fn storage_ref(&self, address: Address, index: U256) -> Result<U256, Self::Error> {
        self.record(|r| {
            r.accounts.insert(address);
            r.slots.insert((address, index));
        });
        self.inner.storage_ref(address, index)
    }

    fn block_hash_ref(&self, number: u64) -> Result<B256, Self::Error> {
        self.record(|r| {
            r.block_hashes.insert(number);
        });
        self.inner.block_hash_ref(number)
    }
}

/// The state root after `bundle` is applied to the state under `root`, from sparse tries over
/// `source`'s nodes. In each trie the updates go first, then the removals, each in the order of
/// their hashed key: a deletion then reveals a sibling only where the final trie collapses a
/// branch, and a witness made by the same walk holds every node it reveals.
pub fn post_state_root(
    source: &impl NodeSource,
    root: B256,
    bundle: &BundleState,
) -> Result<B256, StateError> {
    let mut accounts = SparseTrie::new(root);
    let mut changed: Vec<_> = bundle
        .state
        .iter()
        .map(|(address, account)| (keccak256(address), *address, account))
        .collect();
    // Updates before removals: a branch then collapses only if the final trie needs it.
    changed.sort_unstable_by_key(|(hashed, _, account)| (account.info.is_none(), *hashed));
    for (hashed, address, account) in changed {
        let at_account = |source| StateError::Account {
            address,
            source: Box::new(source),
        };
        let Some(info) = &account.info else {
            accounts
                .remove(source, hashed.as_slice())
                .map_err(at_account)?;
            continue;
        };
        let previous = self::account(source, root, address)?;
        let destroyed = account.was_destroyed();
        let mut storage = match previous {
            Some(prev) if !destroyed => SparseTrie::new(prev.storage_root),
            _ => SparseTrie::empty(),
        };
        let mut slots: Vec<_> = account
            .storage
            .iter()
            .filter(|(_, v)| destroyed || v.is_changed())
            .map(|(slot, v)| (keccak256(slot.to_be_bytes::<32>()), *slot, v.present_value))
            .collect();
        slots.sort_unstable_by_key(|(hashed, _, value)| (value.is_zero(), *hashed));
        for (hashed_slot, slot, value) in slots {
            let encoded = if value.is_zero() {
                Vec::new()
            } else {
                alloy_rlp::encode(value)
            };
            storage
                .update(source, hashed_slot.as_slice(), encoded)
                .map_err(|source| StateError::Storage {
                    address,
                    slot,
                    source: Box::new(source),
                })?;
        }
        let trie_account = TrieAccount {
            nonce: info.nonce,
            balance: info.balance,
            storage_root: storage.root(),
            code_hash: info.code_hash,
        };
        accounts
            .update(source, hashed.as_slice(), alloy_rlp::encode(trie_account))
            .map_err(at_account)?;
    }
    Ok(accounts.root())
}
