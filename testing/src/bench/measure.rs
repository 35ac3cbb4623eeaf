//! Timing: warm-up, adaptive repetition counts, modes interleaved in rounds, robust statistics.

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use eyre::bail;
use revm::context::TxEnv;

use super::exec::Evm;

/// How much to time each (workload, mode).
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// At least this many timed repetitions.
    pub min_reps: u64,
    /// And at least this much timed time.
    pub min_time: Duration,
}

/// Warm-up runs until both are reached (after the untimed check run).
const WARMUP_REPS: u64 = 2;
const WARMUP_TIME: Duration = Duration::from_millis(20);
/// A sample is a batch of repetitions lasting about this long, so that reading the clock
/// (tens of nanoseconds) stays negligible even for transactions of a microsecond.
const BATCH_TIME: Duration = Duration::from_micros(50);
/// The modes take turns this many times, so that a slow drift of the machine (frequency,
/// another process) spreads over all modes instead of biasing whichever ran last. The order
/// rotates every round, because a mode can pay for running right after another one (caches
/// and predictors trained by different code): 6 rounds give each of up to 3 modes every
/// position equally often. Shorter turns cancel more of a shared machine's drift but charge
/// each turn for following another mode's code, unevenly (turns of a millisecond visibly
/// slowed kiln's interpreter against stock revm and the JIT against the interpreter), while a
/// node runs one EVM for good.
pub const ROUNDS: u64 = 6;

/// Timing statistics of one mode on one workload, per transaction.
#[derive(Clone, Debug)]
pub struct Stats {
    /// Median time per transaction.
    pub median_ns: f64,
    /// 10th percentile.
    pub p10_ns: f64,
    /// 90th percentile.
    pub p90_ns: f64,
    /// Median absolute deviation from the median.
    pub mad_ns: f64,
    /// Timed repetitions.
    pub reps: u64,
    /// Samples (batches) the statistics are over.
    pub samples: usize,
}

impl Stats {
    /// Statistics over per-transaction sample times (nanoseconds).
    pub fn from_samples(mut samples: Vec<f64>, reps: u64) -> Self {
        samples.sort_by(f64::total_cmp);
        let median = quantile(&samples, 0.5);
        let mut deviations: Vec<f64> = samples.iter().map(|s| (s - median).abs()).collect();
        deviations.sort_by(f64::total_cmp);
        Self {
            median_ns: median,
            p10_ns: quantile(&samples, 0.1),
            p90_ns: quantile(&samples, 0.9),
            mad_ns: quantile(&deviations, 0.5),
            reps,
            samples: samples.len(),
        }
    }
}

/// Linear-interpolated quantile of sorted values (0 for none).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => 0.0,
        1 => sorted[0],
        n => {
            let pos = q * (n - 1) as f64;
            let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
            sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
        }
    }
}

/// One timed repetition: the whole transaction through the EVM, without committing.
#[inline]
fn run_once(evm: &mut Evm, tx: &TxEnv) -> eyre::Result<()> {
    // The clone is part of what a node pays too (the executor builds a `TxEnv` per
    // transaction); the calldata is reference-counted, so it is a few words.
    match black_box(evm.transact(black_box(tx.clone()))) {
        Ok(out) => {
            drop(black_box(out));
            Ok(())
        }
        // Cannot happen after the check run accepted the transaction; fail loudly if it does.
        Err(err) => bail!("transaction failed while timing: {err}"),
    }
}

/// How one mode is sampled, derived from its warm-up.
struct Plan {
    /// Repetitions per sample.
    batch: u64,
    /// Rounds this mode takes part in (fewer than [`ROUNDS`] when it needs only a few
    /// samples, e.g. a slow transaction at the minimum repetition count).
    rounds: u64,
    /// Samples per round.
    batches_per_round: u64,
}

impl Plan {
    /// Runs warm-up repetitions and sizes the timed part from them.
    fn warm_up(evm: &mut Evm, tx: &TxEnv, budget: Budget) -> eyre::Result<Self> {
        let start = Instant::now();
        let mut reps = 0u64;
        while reps < WARMUP_REPS || start.elapsed() < WARMUP_TIME {
            run_once(evm, tx)?;
            reps += 1;
        }
        let per_rep = (start.elapsed().as_secs_f64() / reps as f64).max(1e-9);
        let wanted = budget
            .min_reps
            .max((budget.min_time.as_secs_f64() / per_rep).ceil() as u64)
            .max(1);
        let batch = ((BATCH_TIME.as_secs_f64() / per_rep).ceil() as u64).clamp(1, wanted);
        let batches = wanted.div_ceil(batch);
        let rounds = ROUNDS.min(batches);
        Ok(Self {
            batch,
            rounds,
            batches_per_round: batches.div_ceil(rounds),
        })
    }
}

/// Times `tx` on every EVM: warm-up, then up to [`ROUNDS`] rounds in which each EVM runs its
/// share of samples in turn. Returns the statistics in the order of `evms`.
pub fn measure(evms: &mut [&mut Evm], tx: &TxEnv, budget: Budget) -> eyre::Result<Vec<Stats>> {
    let plans = evms
        .iter_mut()
        .map(|evm| Plan::warm_up(evm, tx, budget))
        .collect::<eyre::Result<Vec<_>>>()?;
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); evms.len()];
    let mut reps = vec![0u64; evms.len()];
    let n = evms.len();
    for round in 0..ROUNDS {
        for k in 0..n {
            let i = (k + round as usize) % n;
            let (plan, evm) = (&plans[i], &mut *evms[i]);
            if round >= plan.rounds {
                continue;
            }
            for _ in 0..plan.batches_per_round {
                let start = Instant::now();
                for _ in 0..plan.batch {
                    run_once(evm, tx)?;
                }
                let elapsed = start.elapsed();
                samples[i].push(elapsed.as_nanos() as f64 / plan.batch as f64);
                reps[i] += plan.batch;
            }
        }
    }
    Ok(samples
        .into_iter()
        .zip(reps)
        .map(|(s, r)| Stats::from_samples(s, r))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_of_known_samples() {
        let stats = Stats::from_samples(vec![5.0, 1.0, 3.0, 2.0, 4.0], 10);
        assert_eq!(stats.median_ns, 3.0);
        assert!((stats.p10_ns - 1.4).abs() < 1e-9);
        assert!((stats.p90_ns - 4.6).abs() < 1e-9);
        assert_eq!(stats.mad_ns, 1.0);
        assert_eq!((stats.reps, stats.samples), (10, 5));
    }
}
