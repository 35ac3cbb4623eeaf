//! The compile queue: bounded, one job per (code hash, spec), hottest first.

use kiln_runtime::{CodeKey, Tier};
use rustc_hash::FxHashMap;

/// A compilation the service wants.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Job {
    /// What to compile.
    pub key: CodeKey,
    /// [`Tier::Baseline`] (quick) or [`Tier::Optimised`].
    pub tier: Tier,
    /// The code's heat when queued: the order of the queue.
    pub heat: f64,
}

/// Jobs waiting for a compile worker. A code has at most one job: asking again updates its heat
/// and raises (never lowers) its tier. When full, the coldest job gives way.
#[derive(Debug)]
pub struct CompileQueue {
    capacity: usize,
    jobs: FxHashMap<CodeKey, Job>,
}

impl CompileQueue {
    /// A queue holding at most `capacity` jobs.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            jobs: FxHashMap::default(),
        }
    }

    /// Queues (or updates) a job. Returns the job that was dropped to make room, if any.
    pub fn push(&mut self, job: Job) -> Option<Job> {
        if let Some(queued) = self.jobs.get_mut(&job.key) {
            queued.heat = job.heat;
            if job.tier == Tier::Optimised {
                queued.tier = Tier::Optimised;
            }
            return None;
        }
        let mut dropped = None;
        if self.jobs.len() >= self.capacity {
            let coldest = self.coldest()?;
            if coldest.heat >= job.heat {
                return Some(job);
            }
            dropped = self.jobs.remove(&coldest.key);
        }
        self.jobs.insert(job.key, job);
        dropped
    }

    fn coldest(&self) -> Option<Job> {
        self.jobs
            .values()
            .min_by(|a, b| a.heat.total_cmp(&b.heat))
            .copied()
    }

    /// Takes the hottest job.
    pub fn pop(&mut self) -> Option<Job> {
        let hottest = self
            .jobs
            .values()
            .max_by(|a, b| a.heat.total_cmp(&b.heat))?
            .key;
        self.jobs.remove(&hottest)
    }

    /// Drops the job for `key`, if queued.
    pub fn remove(&mut self, key: CodeKey) -> Option<Job> {
        self.jobs.remove(&key)
    }

    /// The queued job for `key`.
    pub fn get(&self, key: CodeKey) -> Option<&Job> {
        self.jobs.get(&key)
    }

    /// The jobs, hottest first.
    pub fn ordered(&self) -> Vec<Job> {
        let mut all: Vec<_> = self.jobs.values().copied().collect();
        all.sort_by(|a, b| b.heat.total_cmp(&a.heat));
        all
    }

    /// Jobs waiting.
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Drops every job.
    pub fn clear(&mut self) {
        self.jobs.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use revm::primitives::{hardfork::SpecId, B256};

    fn job(n: u8, heat: f64, tier: Tier) -> Job {
        Job {
            key: (B256::with_last_byte(n), SpecId::CANCUN),
            tier,
            heat,
        }
    }

    #[test]
    fn hottest_first_deduplicated_and_bounded() {
        let mut q = CompileQueue::new(2);
        assert_eq!(q.push(job(1, 10.0, Tier::Baseline)), None);
        assert_eq!(q.push(job(2, 30.0, Tier::Baseline)), None);
        // The same code again: one job, tier raised, heat updated.
        assert_eq!(q.push(job(1, 40.0, Tier::Optimised)), None);
        assert_eq!(q.len(), 2);
        // Full: a colder job is refused, a hotter one evicts the coldest.
        assert_eq!(
            q.push(job(3, 5.0, Tier::Baseline)),
            Some(job(3, 5.0, Tier::Baseline))
        );
        assert_eq!(
            q.push(job(4, 35.0, Tier::Baseline)),
            Some(job(2, 30.0, Tier::Baseline))
        );
        assert_eq!(q.pop(), Some(job(1, 40.0, Tier::Optimised)));
        assert_eq!(q.pop(), Some(job(4, 35.0, Tier::Baseline)));
        assert_eq!(q.pop(), None);
    }
}
