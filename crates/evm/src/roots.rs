//! Commitments to an execution's outcome: the state root of a post-state and the hash of its
//! logs, as state tests and block headers commit to them.

use alloy_primitives::{keccak256, Log, B256};
use alloy_trie::{
    root::{state_root_unhashed, storage_root_unhashed},
    TrieAccount,
};
use revm::database::{states::plain_account::PlainStorage, CacheState};

/// Root of the account trie over every account that exists in `cache`.
///
/// Zero-valued slots are left out of the storage tries: a zero slot is the same as an
/// absent one, but the cache keeps explicitly zeroed slots around.
pub fn state_root(cache: &CacheState) -> B256 {
    state_root_unhashed(cache.trie_account().into_iter().map(|(address, account)| {
        let info = &account.info;
        let trie_account = TrieAccount::new(
            info.nonce,
            info.balance,
            storage_root(&account.storage),
            info.code_hash,
        );
        (address, trie_account)
    }))
}

fn storage_root(storage: &PlainStorage) -> B256 {
    storage_root_unhashed(
        storage
            .iter()
            .filter(|(_, value)| !value.is_zero())
            .map(|(slot, value)| (B256::from(slot.to_be_bytes::<32>()), *value)),
    )
}

/// `keccak256(rlp([log, ...]))`, the `logs` field of a state-test post entry.
pub fn logs_hash(logs: &[Log]) -> B256 {
    let mut rlp = Vec::new();
    alloy_rlp::encode_list(logs, &mut rlp);
    keccak256(rlp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::{address, b256, Address, Bytes, U256};
    use revm::state::AccountInfo;

    #[test]
    fn empty_commitments() {
        assert_eq!(state_root(&CacheState::new()), alloy_trie::EMPTY_ROOT_HASH);
        // keccak256(rlp([])), the logs hash of every log-free fixture case.
        assert_eq!(
            logs_hash(&[]),
            b256!("1dcc4de8dec75d7aab85b567b6ccd41ad312451b948a7413f0a142fd40d49347")
        );
    }

    #[test]
    fn zero_slots_do_not_change_the_root() {
        let info = AccountInfo {
            balance: U256::from(1),
            ..Default::default()
        };
        let addr = address!("1000000000000000000000000000000000000000");
        let mut plain = CacheState::new();
        plain.insert_account_with_storage(addr, info.clone(), Default::default());
        let mut zeroed = CacheState::new();
        zeroed.insert_account_with_storage(
            addr,
            info,
            [(U256::from(3), U256::ZERO)].into_iter().collect(),
        );
        assert_eq!(state_root(&plain), state_root(&zeroed));
    }

    #[test]
    fn logs_hash_covers_log_contents() {
        let log = |data: &'static [u8]| {
            Log::new_unchecked(Address::ZERO, vec![], Bytes::from_static(data))
        };
        assert_ne!(logs_hash(&[log(b"a")]), logs_hash(&[log(b"b")]));
        assert_ne!(logs_hash(&[log(b"a")]), logs_hash(&[]));
    }
}
