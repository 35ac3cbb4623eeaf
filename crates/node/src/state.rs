//! The state after a block, kept in memory: every account with its storage and cached storage
//! root, so that the next block's state root only rehashes the storage tries it changed.
//!
//! Code is kept apart, by hash, in [`Codes`]: it is content-addressed, so every branch of a
//! test's block tree shares one map.

use crate::fixture::FixtureAccount;
use alloy_primitives::{map::HashMap, Address, B256, U256};
use alloy_trie::{
    root::{state_root_unhashed, storage_root_unhashed},
    TrieAccount, EMPTY_ROOT_HASH,
};
use revm::{
    bytecode::Bytecode,
    database::{states::plain_account::PlainStorage, BundleState, CacheState},
    database_interface::DatabaseRef,
    primitives::KECCAK_EMPTY,
    state::AccountInfo,
};
use std::{
    collections::BTreeMap,
    convert::Infallible,
    sync::{Arc, RwLock},
};

/// Bytecode by code hash.
pub type Codes = HashMap<B256, Bytecode>;

/// Bytecode the hot-code service may ask for by hash: the genesis code of every test imported
/// (code deployed by blocks reaches the service in their records). What a node's database is to
/// a reth ExEx.
#[derive(Debug, Default)]
pub struct CodeStore {
    codes: RwLock<HashMap<B256, alloy_primitives::Bytes>>,
}

impl CodeStore {
    /// Adds every code of `codes`.
    pub fn extend(&self, codes: &Codes) {
        let mut store = self.codes.write().unwrap_or_else(|e| e.into_inner());
        for (hash, code) in codes {
            store.entry(*hash).or_insert_with(|| code.original_bytes());
        }
    }
}

impl kiln_exex::CodeSource for CodeStore {
    fn code(&self, hash: B256) -> Option<alloy_primitives::Bytes> {
        self.codes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&hash)
            .cloned()
    }
}

/// One account of a [`StateSnapshot`].
#[derive(Clone, Debug)]
pub struct AccountState {
    /// Balance, nonce and code hash (the code itself is in [`Codes`]).
    pub info: AccountInfo,
    /// Non-zero storage slots.
    pub storage: Arc<HashMap<U256, U256>>,
    /// Root of `storage`'s trie.
    pub storage_root: B256,
}

impl AccountState {
    fn trie_account(&self) -> TrieAccount {
        TrieAccount {
            nonce: self.info.nonce,
            balance: self.info.balance,
            storage_root: self.storage_root,
            code_hash: self.info.code_hash,
        }
    }
}

/// The world state after one block.
#[derive(Clone, Debug, Default)]
pub struct StateSnapshot {
    /// Every existing account.
    pub accounts: HashMap<Address, AccountState>,
}

/// What [`StateSnapshot::apply`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApplyStats {
    /// Accounts written (changed, created or destroyed).
    pub accounts: usize,
    /// Storage tries rehashed.
    pub storage_roots: usize,
}

impl StateSnapshot {
    /// The state a fixture's `pre` describes; its code goes to `codes`.
    pub fn from_pre(pre: &BTreeMap<Address, FixtureAccount>, codes: &mut Codes) -> Self {
        let accounts = pre
            .iter()
            .map(|(address, account)| {
                let code = Bytecode::new_raw(account.code.clone());
                let code_hash = if account.code.is_empty() {
                    KECCAK_EMPTY
                } else {
                    code.hash_slow()
                };
                codes.insert(code_hash, code);
                let storage: HashMap<U256, U256> = account
                    .storage
                    .iter()
                    .filter(|(_, v)| !v.is_zero())
                    .map(|(k, v)| (*k, *v))
                    .collect();
                let state = AccountState {
                    info: AccountInfo {
                        balance: account.balance,
                        nonce: account.nonce.to(),
                        code_hash,
                        // The code is in `codes` (`Default` would say "no code").
                        code: None,
                        account_id: None,
                    },
                    storage_root: storage_root(&storage),
                    storage: Arc::new(storage),
                };
                (*address, state)
            })
            .collect();
        Self { accounts }
    }

    /// The same state as a revm [`CacheState`] (for [`kiln_evm::roots::state_root`]).
    pub fn to_cache_state(&self, codes: &Codes) -> CacheState {
        let mut cache = CacheState::new();
        for (address, account) in &self.accounts {
            let mut info = account.info.clone();
            info.code = codes.get(&info.code_hash).cloned();
            let storage: PlainStorage = account.storage.iter().map(|(k, v)| (*k, *v)).collect();
            cache.insert_account_with_storage(*address, info, storage);
        }
        cache
    }

    /// The state a block's execution leaves: this state with `bundle` applied. Only accounts
    /// whose storage changed get their storage root recomputed. New code goes to `codes`.
    pub fn apply(&self, bundle: &BundleState, codes: &mut Codes) -> (Self, ApplyStats) {
        for (hash, code) in &bundle.contracts {
            codes.entry(*hash).or_insert_with(|| code.clone());
        }
        let mut next = self.clone();
        let mut stats = ApplyStats::default();
        for (address, account) in &bundle.state {
            stats.accounts += 1;
            let Some(info) = &account.info else {
                next.accounts.remove(address);
                continue;
            };
            let previous = next.accounts.remove(address);
            let (mut storage, mut root) = match previous {
                Some(prev) if !account.was_destroyed() => (prev.storage, prev.storage_root),
                _ => (Arc::default(), EMPTY_ROOT_HASH),
            };
            let mut changed = false;
            for (slot, value) in &account.storage {
                let value = value.present_value;
                let current = storage.get(slot).copied().unwrap_or_default();
                if current != value {
                    let storage = Arc::make_mut(&mut storage);
                    if value.is_zero() {
                        storage.remove(slot);
                    } else {
                        storage.insert(*slot, value);
                    }
                    changed = true;
                }
            }
            if changed {
                root = storage_root(&storage);
                stats.storage_roots += 1;
            }
            let info = AccountInfo {
                code: None,
                ..info.clone()
            };
            next.accounts.insert(
                *address,
                AccountState {
                    info,
                    storage,
                    storage_root: root,
                },
            );
        }
        (next, stats)
    }

    /// Root of the account trie, from each account's cached storage root.
    pub fn state_root(&self) -> B256 {
        state_root_unhashed(
            self.accounts
                .iter()
                .map(|(address, account)| (*address, account.trie_account())),
        )
    }

    /// A read-only database over this state, `codes`, and the block hashes BLOCKHASH may ask
    /// for.
    pub fn database<'a>(
        &'a self,
        codes: &'a Codes,
        block_hashes: &'a HashMap<u64, B256>,
    ) -> SnapshotDb<'a> {
        SnapshotDb {
            state: self,
            codes,
            block_hashes,
        }
    }
}

/// Root of a storage trie (slots are hashed here).
fn storage_root(storage: &HashMap<U256, U256>) -> B256 {
    if storage.is_empty() {
        return EMPTY_ROOT_HASH;
    }
    storage_root_unhashed(
        storage
            .iter()
            .map(|(slot, value)| (B256::from(slot.to_be_bytes::<32>()), *value)),
    )
}

/// A [`DatabaseRef`] over a parent block's [`StateSnapshot`]: what a block executes on.
#[derive(Clone, Copy, Debug)]
pub struct SnapshotDb<'a> {
    state: &'a StateSnapshot,
    codes: &'a Codes,
    block_hashes: &'a HashMap<u64, B256>,
}

impl DatabaseRef for SnapshotDb<'_> {
    type Error = Infallible;

    fn basic_ref(&self, address: Address) -> Result<Option<AccountInfo>, Self::Error> {
        Ok(self.state.accounts.get(&address).map(|a| a.info.clone()))
    }

    fn code_by_hash_ref(&self, code_hash: B256) -> Result<Bytecode, Self::Error> {
        Ok(self.codes.get(&code_hash).cloned().unwrap_or_default())
    }

    fn storage_ref(&self, address: Address, index: U256) -> Result<U256, Self::Error> {
        Ok(self
            .state
            .accounts
            .get(&address)
            .and_then(|a| a.storage.get(&index).copied())
            .unwrap_or_default())
    }

    fn block_hash_ref(&self, number: u64) -> Result<B256, Self::Error> {
        Ok(self.block_hashes.get(&number).copied().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::{address, Bytes, U64};

    fn pre() -> BTreeMap<Address, FixtureAccount> {
        let mut pre = BTreeMap::new();
        pre.insert(
            address!("1000000000000000000000000000000000000001"),
            FixtureAccount {
                balance: U256::from(7),
                nonce: U64::from(1),
                code: Bytes::from_static(&[0x60, 0x00]),
                storage: [(U256::from(1), U256::from(2)), (U256::from(3), U256::ZERO)]
                    .into_iter()
                    .collect(),
            },
        );
        pre.insert(
            address!("2000000000000000000000000000000000000002"),
            FixtureAccount {
                balance: U256::from(1),
                ..Default::default()
            },
        );
        pre
    }

    #[test]
    fn cached_roots_agree_with_kiln_evm_roots() {
        let mut codes = Codes::default();
        let state = StateSnapshot::from_pre(&pre(), &mut codes);
        let expected = kiln_evm::roots::state_root(&state.to_cache_state(&codes));
        assert_eq!(state.state_root(), expected);
    }

    #[test]
    fn empty_state_has_the_empty_root() {
        assert_eq!(StateSnapshot::default().state_root(), EMPTY_ROOT_HASH);
    }
}
