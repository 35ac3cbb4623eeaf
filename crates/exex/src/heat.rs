//! Heat: the gas each code burnt in canonical blocks, decayed exponentially per block, with each
//! recent block's share kept so that a block that leaves the canonical chain takes its heat
//! with it.

use kiln_runtime::CodeKey;
use revm::primitives::B256;
use rustc_hash::FxHashMap;
use std::collections::VecDeque;

/// Scores are stored relative to a base height and rescaled when the head has moved this many
/// half-lives past it, so that they stay well inside `f64`'s range.
const RESCALE_AFTER_HALF_LIVES: f64 = 64.0;

/// One canonical block's contribution, kept while it may still be reverted.
#[derive(Clone, Debug)]
struct BlockHeat {
    number: u64,
    hash: B256,
    gas: Vec<(CodeKey, u64)>,
}

/// Gas-weighted, exponentially decayed heat per code.
#[derive(Clone, Debug)]
pub struct Heat {
    half_life: f64,
    /// The newest canonical block counted.
    head: u64,
    /// Heights scores are stored relative to: a score `s` means `s * 2^-((head - base) / half_life)`.
    base: u64,
    scores: FxHashMap<CodeKey, f64>,
    recent: VecDeque<BlockHeat>,
    window: usize,
}

impl Heat {
    /// Heat that halves every `half_life` blocks and can take back the last `window` blocks.
    pub fn new(half_life: f64, window: usize) -> Self {
        Self {
            half_life: half_life.max(f64::MIN_POSITIVE),
            head: 0,
            base: 0,
            scores: FxHashMap::default(),
            recent: VecDeque::new(),
            window: window.max(1),
        }
    }

    /// The newest block counted.
    pub fn head(&self) -> u64 {
        self.head
    }

    /// `2^((number - base) / half_life)`: the weight of gas burnt at `number`.
    fn weight(&self, number: u64) -> f64 {
        ((number as f64 - self.base as f64) / self.half_life).exp2()
    }

    /// Counts a canonical block's gas per code; the head moves to it.
    pub fn add_block(&mut self, number: u64, hash: B256, gas: Vec<(CodeKey, u64)>) {
        self.advance(number);
        let w = self.weight(number);
        for (key, g) in &gas {
            *self.scores.entry(*key).or_default() += *g as f64 * w;
        }
        self.recent.push_back(BlockHeat { number, hash, gas });
        while self.recent.len() > self.window {
            self.recent.pop_front();
        }
    }

    /// Takes a block's heat back out (it left the canonical chain); the head moves to its
    /// parent. Returns whether the block was known (a block older than the window is final).
    pub fn revert_block(&mut self, hash: B256) -> bool {
        let Some(at) = self.recent.iter().rposition(|b| b.hash == hash) else {
            return false;
        };
        let Some(block) = self.recent.remove(at) else {
            return false;
        };
        let w = self.weight(block.number);
        for (key, g) in block.gas {
            if let Some(score) = self.scores.get_mut(&key) {
                *score -= g as f64 * w;
                // What is left of a code no canonical block used is rounding error.
                if *score <= 1e-9 * w {
                    self.scores.remove(&key);
                }
            }
        }
        self.head = block.number.saturating_sub(1);
        true
    }

    /// Moves the head to `number` (decaying every score), rescaling stored scores when needed.
    fn advance(&mut self, number: u64) {
        self.head = number;
        if (number.saturating_sub(self.base)) as f64 >= RESCALE_AFTER_HALF_LIVES * self.half_life {
            let factor = 1.0 / self.weight(number);
            self.scores.values_mut().for_each(|s| *s *= factor);
            self.scores.retain(|_, s| *s >= 1e-3);
            self.base = number;
        }
    }

    /// Starts from scores saved at `head` (a restart): they decay from there as blocks come.
    /// Blocks before the restart can no longer be reverted.
    pub fn restore(&mut self, head: u64, scores: impl IntoIterator<Item = (CodeKey, f64)>) {
        self.head = head;
        self.base = head;
        self.recent.clear();
        self.scores = scores
            .into_iter()
            .filter(|(_, s)| s.is_finite() && *s > 0.0)
            .collect();
    }

    /// The heat of `key` at the head, in gas.
    pub fn score(&self, key: CodeKey) -> f64 {
        self.scores
            .get(&key)
            .map_or(0.0, |s| s / self.weight(self.head))
    }

    /// Every code with heat, hottest first.
    pub fn ranked(&self) -> Vec<(CodeKey, f64)> {
        let now = self.weight(self.head);
        let mut all: Vec<_> = self.scores.iter().map(|(k, s)| (*k, s / now)).collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1));
        all
    }

    /// Codes with any heat.
    pub fn len(&self) -> usize {
        self.scores.len()
    }

    /// Whether no code has heat.
    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use revm::primitives::hardfork::SpecId;

    fn key(n: u8) -> CodeKey {
        (B256::with_last_byte(n), SpecId::CANCUN)
    }

    #[test]
    fn heat_halves_every_half_life_and_sums_blocks() {
        let mut heat = Heat::new(10.0, 64);
        heat.add_block(1, B256::with_last_byte(1), vec![(key(1), 1_000)]);
        assert!((heat.score(key(1)) - 1_000.0).abs() < 1e-6);
        heat.add_block(11, B256::with_last_byte(11), vec![(key(1), 1_000)]);
        assert!((heat.score(key(1)) - 1_500.0).abs() < 1e-6);
        heat.add_block(21, B256::with_last_byte(21), vec![(key(2), 100)]);
        assert!((heat.score(key(1)) - 750.0).abs() < 1e-6);
        assert_eq!(heat.ranked()[0].0, key(1));
    }

    #[test]
    fn a_reverted_block_takes_its_heat_back() {
        let mut heat = Heat::new(8.0, 64);
        heat.add_block(1, B256::with_last_byte(1), vec![(key(1), 500)]);
        heat.add_block(
            2,
            B256::with_last_byte(2),
            vec![(key(1), 300), (key(2), 900)],
        );
        assert!(heat.revert_block(B256::with_last_byte(2)));
        assert_eq!(heat.head(), 1);
        assert!((heat.score(key(1)) - 500.0).abs() < 1e-6);
        assert_eq!(heat.score(key(2)), 0.0);
        assert!(!heat.revert_block(B256::with_last_byte(9)));
    }

    #[test]
    fn scores_survive_rescaling_over_long_chains() {
        let mut heat = Heat::new(2.0, 4);
        for n in 1..=10_000u64 {
            heat.add_block(
                n,
                B256::left_padding_from(&n.to_be_bytes()),
                vec![(key(1), 100)],
            );
        }
        // Geometric series: 100 / (1 - 2^-0.5).
        let expected = 100.0 / (1.0 - 0.5f64.sqrt());
        assert!((heat.score(key(1)) - expected).abs() / expected < 1e-9);
    }
}
