//! Which instructions of a code have run: the profile that profile-guided compilation uses to
//! compile only the blocks execution reaches.
//!
//! A block no recorded run entered is *cold*: its compiled form hands the frame to the
//! interpreter at the block's first pc, before charging anything of the block, with the stack
//! written back, exactly as a failed section check does. A profile that misses a path therefore
//! costs speed on that path, never correctness; and LLVM, whose time grows with the IR, only
//! sees the code that runs (a token contract's transfer touches a small part of its bytecode).

/// A set of program counters of one code, as a bit set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Coverage {
    words: Vec<u64>,
}

impl Coverage {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that the instruction at `pc` ran.
    #[inline]
    pub fn record(&mut self, pc: usize) {
        let (word, bit) = (pc / 64, pc % 64);
        if word >= self.words.len() {
            self.words.resize(word + 1, 0);
        }
        self.words[word] |= 1 << bit;
    }

    /// Whether the instruction at `pc` ran.
    pub fn contains(&self, pc: usize) -> bool {
        self.words
            .get(pc / 64)
            .is_some_and(|w| w & (1 << (pc % 64)) != 0)
    }

    /// Adds every pc of `other`.
    pub fn merge(&mut self, other: &Coverage) {
        if other.words.len() > self.words.len() {
            self.words.resize(other.words.len(), 0);
        }
        for (w, o) in self.words.iter_mut().zip(&other.words) {
            *w |= o;
        }
    }

    /// Number of pcs recorded.
    pub fn len(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// The pcs recorded, in order.
    pub fn pcs(&self) -> impl Iterator<Item = usize> + '_ {
        self.words.iter().enumerate().flat_map(|(i, &w)| {
            (0..64)
                .filter(move |b| w & (1 << b) != 0)
                .map(move |b| i * 64 + b)
        })
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|&w| w == 0)
    }
}

impl FromIterator<usize> for Coverage {
    fn from_iter<I: IntoIterator<Item = usize>>(pcs: I) -> Self {
        let mut c = Coverage::new();
        for pc in pcs {
            c.record(pc);
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_merges_and_counts() {
        let mut a: Coverage = [0, 63, 64, 1000].into_iter().collect();
        assert!(a.contains(63) && a.contains(64) && a.contains(1000));
        assert!(!a.contains(1) && !a.contains(999) && !a.contains(100_000));
        assert_eq!(a.len(), 4);
        let b: Coverage = [1, 5000].into_iter().collect();
        a.merge(&b);
        assert_eq!(a.len(), 6);
        assert!(a.contains(5000) && a.contains(1));
        assert!(Coverage::new().is_empty() && !a.is_empty());
    }
}
