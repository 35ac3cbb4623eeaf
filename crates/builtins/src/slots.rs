//! Storage slots a stretch of compiled code has already loaded or stored.
//!
//! An SLOAD goes through revm's journal: a hash lookup of the account, then of the slot, then the
//! warm/cold bookkeeping. Loops that read the same slots over and over (snailtracer's scene, a
//! token's configuration) spend much of their compiled run there. Between two calls out of the
//! compiled code into revm's frame loop, though, a slot of the executing account changes only
//! through this frame's own SSTOREs: other frames run only after the compiled function returns
//! (calls and creates suspend it, see "Calls that suspend" in docs/architecture.md), and a new
//! [`KilnCtx`](crate::KilnCtx), with an empty cache, is built for every resumption. So a slot
//! this stretch has loaded or stored holds the value recorded here, and it is warm, so revm would
//! charge nothing beyond SLOAD's static cost, which the compiled code has already paid.
//!
//! The cache is 64 KiB, too big to build per stretch: building the context by value copied it on
//! every entry into compiled code, which cost more than compiling saved. Each thread keeps one
//! ([`with_slot_cache`]) and a stretch starts by clearing its valid bits. It comes into use only
//! from a stretch's [`WARM_UP_LOADS`]th SLOAD on: most calls into a token or a pool load a
//! handful of distinct slots, for which recording costs more than it saves (uniswap_v2_pair's
//! `getReserves` is one SLOAD, which a cache cannot answer but would still record).

use revm::primitives::U256;
use std::cell::RefCell;

/// Entries in the cache: two ways per set. Loops that walk a scene or an order book touch a
/// few hundred slots; with half as many direct-mapped entries, collisions between them still
/// sent many loads to revm.
const ENTRIES: usize = 1024;
const SETS: usize = ENTRIES / 2;

/// SLOADs a stretch makes before the cache is used.
pub const WARM_UP_LOADS: u32 = 3;

/// An entry [`SlotCache::get_or_claim`] set aside for a key whose value is being loaded.
#[derive(Debug)]
#[must_use = "a claimed entry records nothing until it is filled"]
pub struct Claim {
    set: usize,
    index: usize,
}

/// A two-way set-associative cache from storage key to present value, for one stretch of
/// compiled code (see the module documentation for why that is sound).
pub struct SlotCache {
    /// Bit `i % 64` of word `i / 64` set: entry `i` holds a key and its value.
    valid: [u64; ENTRIES / 64],
    /// Bit `s % 64` of word `s / 64`: the way of set `s` used last, so the other is replaced.
    recent: [u64; SETS / 64],
    /// Some valid bit may be set.
    dirty: bool,
    /// SLOADs this stretch has made, counted up to [`WARM_UP_LOADS`] + 1.
    loads: u32,
    /// Keys and values; an entry means something only while its valid bit is set.
    entries: Box<[(U256, U256)]>,
}

impl Default for SlotCache {
    fn default() -> Self {
        Self {
            valid: [0; ENTRIES / 64],
            recent: [0; SETS / 64],
            dirty: false,
            loads: 0,
            entries: vec![(U256::ZERO, U256::ZERO); ENTRIES].into_boxed_slice(),
        }
    }
}

thread_local! {
    static SLOT_CACHE: RefCell<SlotCache> = RefCell::new(SlotCache::default());
}

/// Runs `f` with this thread's slot cache, emptied, for one stretch of compiled code. `f` gets
/// a null pointer if the cache is already in use further up this thread's stack (a host that
/// runs compiled code from inside compiled code); that stretch then runs without one.
#[inline]
pub fn with_slot_cache<R>(f: impl FnOnce(*mut SlotCache) -> R) -> R {
    SLOT_CACHE.with(|cell| match cell.try_borrow_mut() {
        Ok(mut cache) => {
            cache.clear();
            f(&mut *cache)
        }
        Err(_) => f(core::ptr::null_mut()),
    })
}

impl core::fmt::Debug for SlotCache {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SlotCache")
            .field(
                "entries",
                &self.valid.iter().map(|w| w.count_ones()).sum::<u32>(),
            )
            .finish()
    }
}

impl SlotCache {
    /// The set `key` belongs to.
    #[inline(always)]
    fn set(key: &U256) -> usize {
        let l = key.as_limbs();
        // Fibonacci hashing of all four limbs: the top bits of the product depend on every
        // input bit, so neither consecutive keys (array elements, struct fields) nor hashes
        // that share low bits crowd into the same sets.
        let h = (l[0] ^ l[1].rotate_left(16) ^ l[2].rotate_left(32) ^ l[3].rotate_left(48))
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (h >> (64 - SETS.trailing_zeros())) as usize
    }

    /// Forgets every entry.
    #[inline]
    pub fn clear(&mut self) {
        self.loads = 0;
        // Most stretches (a call's return, a view function) record nothing: skip the stores.
        if self.dirty {
            self.valid = [0; ENTRIES / 64];
            self.dirty = false;
        }
    }

    /// Counts an SLOAD; true if the cache is in use for it (and for everything after it).
    #[inline]
    pub fn note_load(&mut self) -> bool {
        if self.loads > WARM_UP_LOADS {
            return true;
        }
        self.loads += 1;
        self.loads > WARM_UP_LOADS
    }

    /// Whether the cache is in use in this stretch (so stores must keep it coherent).
    #[inline]
    pub fn in_use(&self) -> bool {
        self.loads > WARM_UP_LOADS
    }

    #[inline(always)]
    fn is_valid(&self, i: usize) -> bool {
        self.valid[i / 64] & (1 << (i % 64)) != 0
    }

    /// The entry holding `key`, if any.
    #[inline(always)]
    fn find(&self, set: usize, key: &U256) -> Option<usize> {
        (2 * set..2 * set + 2).find(|&i| self.is_valid(i) && same_word(&self.entries[i].0, key))
    }

    #[inline(always)]
    fn touch(&mut self, set: usize, i: usize) {
        let bit = 1 << (set % 64);
        if i % 2 == 1 {
            self.recent[set / 64] |= bit;
        } else {
            self.recent[set / 64] &= !bit;
        }
    }

    /// The present value of `key`, if this stretch loaded or stored it, without claiming an
    /// entry on a miss (SLOAD uses [`SlotCache::get_or_claim`]).
    #[cfg(test)]
    pub fn get(&mut self, key: &U256) -> Option<U256> {
        let set = Self::set(key);
        let i = self.find(set, key)?;
        self.touch(set, i);
        Some(self.entries[i].1)
    }

    /// Records that `key` now holds `value`.
    #[inline]
    pub fn insert(&mut self, key: U256, value: U256) {
        let set = Self::set(&key);
        let i = self.find(set, &key).unwrap_or_else(|| self.victim(set));
        self.entries[i].0 = key;
        self.fill(Claim { set, index: i }, value);
    }

    /// The value of `key` if recorded; otherwise the entry that will record it, already
    /// holding the key and not valid until [`SlotCache::fill`] gives it its value.
    ///
    /// SLOAD learns the value only from revm, after a call: keeping the key alive across that
    /// call made the compiler spill it with 8-byte stores right before comparing it with 16-byte
    /// loads, which cannot be forwarded from those stores, so every lookup stalled until the
    /// stores reached the cache. Writing the key into its entry before the call leaves nothing to
    /// spill.
    #[inline]
    pub fn get_or_claim(&mut self, key: &U256) -> Result<U256, Claim> {
        let set = Self::set(key);
        if let Some(i) = self.find(set, key) {
            self.touch(set, i);
            return Ok(self.entries[i].1);
        }
        let index = self.victim(set);
        self.valid[index / 64] &= !(1 << (index % 64));
        self.entries[index].0 = *key;
        Err(Claim { set, index })
    }

    /// Records the value of the key `claim` was made for. No other call on the cache may come
    /// between [`SlotCache::get_or_claim`] and this (the entry could have been reused).
    #[inline]
    pub fn fill(&mut self, claim: Claim, value: U256) {
        let Claim { set, index: i } = claim;
        self.entries[i].1 = value;
        self.valid[i / 64] |= 1 << (i % 64);
        self.dirty = true;
        self.touch(set, i);
    }

    /// The entry of `set` a new key replaces: an invalid way, else the one used less recently.
    #[inline(always)]
    fn victim(&self, set: usize) -> usize {
        let (a, b) = (2 * set, 2 * set + 1);
        if !self.is_valid(a) {
            a
        } else if !self.is_valid(b) {
            b
        } else if self.recent[set / 64] & (1 << (set % 64)) != 0 {
            a
        } else {
            b
        }
    }

    /// Forgets `key`, if it is recorded.
    #[inline]
    pub fn remove(&mut self, key: &U256) {
        if let Some(i) = self.find(Self::set(key), key) {
            self.valid[i / 64] &= !(1 << (i % 64));
        }
    }
}

/// `a == b`, limb by limb in registers. `==` on words compiles to a memory comparison: the key,
/// just read limb by limb from the EVM stack, was stored back to the native stack with 8-byte
/// stores and compared with 16-byte loads, which cannot be forwarded from those stores, so each
/// comparison waited for the stores to reach the cache.
#[inline(always)]
fn same_word(a: &U256, b: &U256) -> bool {
    let (a, b) = (a.as_limbs(), b.as_limbs());
    ((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3])) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys that fall into the same set as `key`, found by search.
    fn same_set(key: &U256, n: usize) -> Vec<U256> {
        let set = SlotCache::set(key);
        (1u64..)
            .map(|x| key + U256::from(x))
            .filter(|k| SlotCache::set(k) == set)
            .take(n)
            .collect()
    }

    #[test]
    fn keeps_the_latest_value_and_replaces_the_least_recent_way() {
        let mut c = SlotCache::default();
        let a = U256::from(3);
        let [b, d] = same_set(&a, 2).try_into().unwrap();
        assert_eq!(c.get(&a), None);
        c.insert(a, U256::from(10));
        assert_eq!(c.get(&a), Some(U256::from(10)));
        c.insert(a, U256::from(11));
        assert_eq!(c.get(&a), Some(U256::from(11)));
        // Two ways: `b` joins `a` in the set.
        c.insert(b, U256::from(12));
        assert_eq!(c.get(&b), Some(U256::from(12)));
        // `a` used last, so a third key of the set replaces `b`, never answers for it.
        assert_eq!(c.get(&a), Some(U256::from(11)));
        c.insert(d, U256::from(13));
        assert_eq!(c.get(&b), None);
        assert_eq!(c.get(&a), Some(U256::from(11)));
        assert_eq!(c.get(&d), Some(U256::from(13)));
        // Removing a key that is not recorded leaves the others.
        c.remove(&b);
        assert_eq!(c.get(&a), Some(U256::from(11)));
        c.remove(&a);
        assert_eq!(c.get(&a), None);
        assert_eq!(c.get(&d), Some(U256::from(13)));
        // Keys that differ only in the top limb are told apart.
        let high = U256::from_limbs([13, 0, 0, 1]);
        let low = U256::from(13);
        c.insert(high, U256::from(14));
        assert_eq!(c.get(&low), None);
        assert_eq!(c.get(&high), Some(U256::from(14)));
    }

    #[test]
    fn a_claim_records_nothing_until_filled() {
        let mut c = SlotCache::default();
        let a = U256::from(5);
        let claim = c.get_or_claim(&a).unwrap_err();
        // A load that failed leaves no entry behind.
        assert_eq!(c.get(&a), None);
        let claim2 = c.get_or_claim(&a).unwrap_err();
        drop(claim);
        c.fill(claim2, U256::from(6));
        assert_eq!(c.get_or_claim(&a).ok(), Some(U256::from(6)));
        // Claims replace the less recently used way, as inserts do.
        let [b, d] = same_set(&a, 2).try_into().unwrap();
        let claim = c.get_or_claim(&b).unwrap_err();
        c.fill(claim, U256::from(7));
        assert_eq!(c.get(&a), Some(U256::from(6)));
        let claim = c.get_or_claim(&d).unwrap_err();
        c.fill(claim, U256::from(8));
        assert_eq!(c.get(&b), None);
        assert_eq!(c.get(&a), Some(U256::from(6)));
        assert_eq!(c.get(&d), Some(U256::from(8)));
    }

    #[test]
    fn a_stretch_starts_empty_and_nested_use_gets_none() {
        let key = U256::from(1);
        with_slot_cache(|c| {
            assert!(!c.is_null());
            // SAFETY: the pointer is this thread's cache, exclusively ours inside the closure.
            unsafe { (*c).insert(key, U256::from(2)) };
            with_slot_cache(|inner| assert!(inner.is_null()));
        });
        // SAFETY: as above.
        with_slot_cache(|c| assert_eq!(unsafe { (*c).get(&key) }, None));
    }

    #[test]
    fn comes_into_use_after_the_warm_up_loads() {
        let mut c = SlotCache::default();
        for _ in 0..WARM_UP_LOADS {
            assert!(!c.in_use());
            assert!(!c.note_load());
        }
        assert!(c.note_load());
        assert!(c.in_use() && c.note_load());
        c.clear();
        assert!(!c.in_use());
    }

    #[test]
    fn holds_a_working_set_of_consecutive_slots() {
        // An array of 300 consecutive slots, the shape of snailtracer's scene: nearly all of
        // it must stay cached.
        let mut c = SlotCache::default();
        let base = U256::from_be_bytes(revm::primitives::keccak256([7u8; 32]).0);
        for i in 0..300u64 {
            c.insert(base + U256::from(i), U256::from(i));
        }
        let hits = (0..300u64)
            .filter(|&i| c.get(&(base + U256::from(i))) == Some(U256::from(i)))
            .count();
        assert!(hits >= 290, "{hits} of 300 consecutive slots kept");
    }
}
