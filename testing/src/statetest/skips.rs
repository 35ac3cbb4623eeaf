//! Fixture files that are not run, by file name, each with the reason.
//!
//! Mirrors the files `revme statetest` leaves out. Every entry is either a scenario revm does
//! not model or a fixture value it cannot represent, so any runner built on revm fails them;
//! the slow entry passes but only exercises a precompile.

/// Why a file is skipped: a summary category and the detail shown per case.
#[derive(Clone, Copy, Debug)]
pub struct Skip {
    /// Groups skipped cases in the summary.
    pub category: &'static str,
    /// Per-case explanation.
    pub reason: &'static str,
}

const STORAGE_COLLISION: Skip = Skip {
    category: "EIP-7610 collision with a storage-only account (not modelled by revm)",
    reason: "a CREATE targets an address that has storage but no code and nonce 0; EIP-7610 \
             makes that a collision, revm checks only code and nonce (revme skips this file too)",
};

const VALUE_OVERFLOW: Skip = Skip {
    category: "value wider than 256 bits in the fixture",
    reason: "the fixture writes a >256-bit value as `0x:bigint ...`, which no transaction field \
             can hold (revme skips this file too)",
};

const SLOW: Skip = Skip {
    category: "slow (pass with stock revm; run them with --include-slow)",
    reason: "about 35 s inside the BLAKE2 precompile with next to no contract code; \
             --include-slow runs it",
};

/// The skip for `file_name`, if any. `include_slow` lifts the skips of slow-but-passing files.
pub fn known_skip(file_name: &str, include_slow: bool) -> Option<Skip> {
    match file_name {
        "RevertInCreateInInit.json"
        | "RevertInCreateInInit_Paris.json"
        | "RevertInCreateInInitCreate2.json"
        | "RevertInCreateInInitCreate2Paris.json"
        | "create2collisionStorage.json"
        | "create2collisionStorageParis.json"
        | "dynamicAccountOverwriteEmpty.json"
        | "dynamicAccountOverwriteEmpty_Paris.json"
        | "InitCollision.json"
        | "InitCollisionParis.json" => Some(STORAGE_COLLISION),
        "ValueOverflow.json" | "ValueOverflowParis.json" => Some(VALUE_OVERFLOW),
        "CALLBlake2f_MaxRounds.json" if !include_slow => Some(SLOW),
        _ => None,
    }
}
